/*
 * proto — the PostgreSQL v3 wire protocol codec: pure functions over byte buffers.
 *
 * Owns: message framing (type byte + big-endian length), the startup packet family (StartupMessage,
 * SSLRequest, GSSENCRequest, CancelRequest), readers for message bodies, and builders for every
 * message pgrelay itself sends to a client or a server. Knows nothing of sockets, pools or routing.
 */
#ifndef PGRELAY_PROTO_H
#define PGRELAY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Frame header: 1 type byte + int32 length (which counts itself, not the type byte). */
#define PROTO_HEADER_LEN 5
#define PROTO_STARTUP_MAX_LEN 10000
/* Largest length word of any message: PostgreSQL allocates at most 1 GB - 1 for one (MaxAllocSize). */
#define PROTO_MAX_MESSAGE_LEN 0x3fffffffu
/* Largest password / SASL message accepted during login (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH). */
#define PROTO_AUTH_MAX_LEN 65535

#define PROTO_VERSION(major, minor) (((uint32_t)(major) << 16) | (uint32_t)(minor))
#define PROTO_CODE_CANCEL 80877102u
#define PROTO_CODE_SSL 80877103u
#define PROTO_CODE_GSSENC 80877104u

/* Authentication request codes ('R' messages). */
enum {
	PROTO_AUTH_OK = 0,
	PROTO_AUTH_CLEARTEXT = 3,
	PROTO_AUTH_MD5 = 5,
	PROTO_AUTH_SASL = 10,
	PROTO_AUTH_SASL_CONTINUE = 11,
	PROTO_AUTH_SASL_FINAL = 12,
};

/* SQLSTATEs pgrelay uses in its own ErrorResponses. */
#define SQLSTATE_PROTOCOL_VIOLATION "08P01"
#define SQLSTATE_CONNECTION_FAILURE "08006"
#define SQLSTATE_CANNOT_CONNECT "08001"
#define SQLSTATE_INVALID_AUTHORIZATION "28000"
#define SQLSTATE_INVALID_PASSWORD "28P01"
#define SQLSTATE_INVALID_CATALOG_NAME "3D000"
#define SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define SQLSTATE_ADMIN_SHUTDOWN "57P01"
#define SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"
#define SQLSTATE_PROGRAM_LIMIT_EXCEEDED "54000"
#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_INTERNAL_ERROR "XX000"

static inline uint32_t proto_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t proto_get_u16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline void proto_set_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Reads a frame header from avail bytes at p. Returns 0 if fewer than 5 bytes are there, -1 if the
 * length is impossible (< 4), otherwise 1 with *type and *total (type byte + length) set.
 */
int proto_frame(const uint8_t *p, size_t avail, uint8_t *type, size_t *total);

/* ---- reading message bodies ---- */
typedef struct ProtoReader {
	const uint8_t *data;
	size_t len;
	size_t pos;
	bool error; /* sticky: set by any read past the end or an unterminated string */
} ProtoReader;

void proto_reader_init(ProtoReader *r, const void *data, size_t len);
uint8_t proto_read_u8(ProtoReader *r);
uint16_t proto_read_u16(ProtoReader *r);
uint32_t proto_read_u32(ProtoReader *r);
/* A NUL-terminated string inside the body; returns "" (and sets error) when unterminated. */
const char *proto_read_str(ProtoReader *r);
/* n raw bytes; NULL (and error) if the body is shorter. */
const uint8_t *proto_read_bytes(ProtoReader *r, size_t n);
static inline size_t proto_reader_left(const ProtoReader *r) { return r->len - r->pos; }

/* ---- Bind parameter values ---- */
#define PROTO_MAX_BIND_VALUES 64
typedef struct ProtoBindValues {
	size_t n;
	const uint8_t *values[PROTO_MAX_BIND_VALUES]; /* NULL: SQL NULL */
	uint32_t lens[PROTO_MAX_BIND_VALUES];
	bool binary[PROTO_MAX_BIND_VALUES];
	uint32_t types[PROTO_MAX_BIND_VALUES];         /* from the Parse; 0: unspecified */
} ProtoBindValues;

/*
 * Reads the parameters of a Bind body after its portal and statement names (formats, values),
 * with their types from the Parse body after its name (query\0 int16 n, oid[n]; NULL: unknown).
 * False when malformed or holding more than PROTO_MAX_BIND_VALUES parameters.
 */
bool proto_parse_bind_values(const uint8_t *bind_rest, size_t bind_len, const uint8_t *parse_rest, size_t parse_len,
			     ProtoBindValues *out);

/* ---- the startup packet family (no type byte) ---- */
#define PROTO_STARTUP_MAX_PARAMS 64
typedef struct ProtoStartup {
	uint32_t code; /* protocol version or one of PROTO_CODE_* */
	/* CancelRequest */
	uint32_t cancel_pid, cancel_key;
	/* StartupMessage: pointers into the packet */
	size_t n_params;
	const char *names[PROTO_STARTUP_MAX_PARAMS];
	const char *values[PROTO_STARTUP_MAX_PARAMS];
} ProtoStartup;

/*
 * Parses a complete startup-family packet (including its 4-byte length). Returns NULL on success
 * or a static message describing what is malformed.
 */
const char *proto_parse_startup(const uint8_t *packet, size_t len, ProtoStartup *out);

/* ---- ErrorResponse / NoticeResponse fields ---- */
typedef struct ProtoErrorFields {
	const char *severity; /* 'V' (non-localized) or 'S' */
	const char *sqlstate; /* 'C' */
	const char *message;  /* 'M' */
	const char *detail;   /* 'D' */
} ProtoErrorFields;

/* The transaction status of a ReadyForQuery body: 'I', 'T' or 'E'; 0 when the body is not exactly
 * one of those bytes (an empty body, a longer one, another byte). */
char proto_parse_ready_for_query(const uint8_t *body, size_t len);
/* The two names at the start of a Bind body (portal, statement) and their length with their
 * terminators, or false if have bytes do not hold both. */
bool proto_bind_names(const uint8_t *body, size_t have, const char **portal, const char **stmt, size_t *names_len);

/* Parses the body (after the length) of an 'E' or 'N' message; missing fields are "". */
bool proto_parse_error(const uint8_t *body, size_t len, ProtoErrorFields *out);

/* ---- builders: each appends one complete message to b ---- */
size_t proto_begin(Buf *b, char type); /* type 0: untyped (startup family) */
void proto_end(Buf *b, size_t begin_offset);
void proto_put_u8(Buf *b, uint8_t v);
void proto_put_u16(Buf *b, uint16_t v);
void proto_put_u32(Buf *b, uint32_t v);
void proto_put_str(Buf *b, const char *s);
void proto_put_bytes(Buf *b, const void *p, size_t n);

void proto_build_error(Buf *b, const char *severity, const char *sqlstate, const char *message,
		       const char *detail, const char *hint);
void proto_build_auth(Buf *b, uint32_t code, const void *data, size_t len);
void proto_build_auth_sasl(Buf *b, const char *mechanism);
void proto_build_parameter_status(Buf *b, const char *name, const char *value);
void proto_build_backend_key_data(Buf *b, uint32_t pid, uint32_t key);
void proto_build_ready_for_query(Buf *b, char status);
void proto_build_negotiate_version(Buf *b, uint32_t newest_minor, const char *const *unknown, size_t n);
void proto_build_query(Buf *b, const char *sql);
void proto_build_startup(Buf *b, const char *const *names, const char *const *values, size_t n);
void proto_build_password(Buf *b, const char *password);
void proto_build_sasl_initial(Buf *b, const char *mechanism, const void *data, size_t len);
void proto_build_sasl_response(Buf *b, const void *data, size_t len);
void proto_build_cancel_request(Buf *b, uint32_t pid, uint32_t key);
void proto_build_terminate(Buf *b);

/* A printable name for a message type byte, for logs ("Query", "DataRow", ...). */
const char *proto_frontend_type_name(uint8_t type);
const char *proto_backend_type_name(uint8_t type);

#endif
