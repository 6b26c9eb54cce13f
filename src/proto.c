/*
 * proto — PostgreSQL v3 wire protocol codec (see proto.h). Pure: no I/O, no allocation beyond
 * the Buf it is given.
 */
#include "proto.h"

#include <string.h>

int proto_frame(const uint8_t *p, size_t avail, uint8_t *type, size_t *total)
{
	if (avail < PROTO_HEADER_LEN)
		return 0;
	uint32_t len = proto_get_u32(p + 1);
	if (len < 4 || len > PROTO_MAX_MESSAGE_LEN)
		return -1;
	*type = p[0];
	*total = (size_t)len + 1;
	return 1;
}

/* ---- readers ---- */

void proto_reader_init(ProtoReader *r, const void *data, size_t len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
	r->error = false;
}

static bool reader_has(ProtoReader *r, size_t n)
{
	if (r->error || r->len - r->pos < n) {
		r->error = true;
		return false;
	}
	return true;
}

uint8_t proto_read_u8(ProtoReader *r)
{
	if (!reader_has(r, 1))
		return 0;
	return r->data[r->pos++];
}

uint16_t proto_read_u16(ProtoReader *r)
{
	if (!reader_has(r, 2))
		return 0;
	uint16_t v = proto_get_u16(r->data + r->pos);
	r->pos += 2;
	return v;
}

uint32_t proto_read_u32(ProtoReader *r)
{
	if (!reader_has(r, 4))
		return 0;
	uint32_t v = proto_get_u32(r->data + r->pos);
	r->pos += 4;
	return v;
}

const char *proto_read_str(ProtoReader *r)
{
	if (r->error)
		return "";
	const uint8_t *start = r->data + r->pos;
	const uint8_t *nul = memchr(start, 0, r->len - r->pos);
	if (!nul) {
		r->error = true;
		return "";
	}
	r->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

const uint8_t *proto_read_bytes(ProtoReader *r, size_t n)
{
	if (!reader_has(r, n))
		return NULL;
	const uint8_t *p = r->data + r->pos;
	r->pos += n;
	return p;
}

/* ---- startup family ---- */

const char *proto_parse_startup(const uint8_t *packet, size_t len, ProtoStartup *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 8)
		return "startup packet is too short";
	if (proto_get_u32(packet) != len)
		return "startup packet length does not match its contents";
	ProtoReader r;
	proto_reader_init(&r, packet + 4, len - 4);
	out->code = proto_read_u32(&r);
	switch (out->code) {
	case PROTO_CODE_SSL:
	case PROTO_CODE_GSSENC:
		return len == 8 ? NULL : "malformed SSLRequest/GSSENCRequest";
	case PROTO_CODE_CANCEL:
		if (len != 16)
			return "malformed CancelRequest";
		out->cancel_pid = proto_read_u32(&r);
		out->cancel_key = proto_read_u32(&r);
		return NULL;
	default:
		break;
	}
	if ((out->code >> 16) != 3)
		return NULL; /* the caller reports the unsupported version */
	/* name\0value\0 ... \0 */
	for (;;) {
		if (proto_reader_left(&r) == 0)
			return "startup packet is not terminated";
		if (r.data[r.pos] == 0) {
			r.pos++;
			break;
		}
		const char *name = proto_read_str(&r);
		const char *value = proto_read_str(&r);
		if (r.error)
			return "startup packet has an unterminated parameter";
		if (out->n_params == PROTO_STARTUP_MAX_PARAMS)
			return "startup packet has too many parameters";
		out->names[out->n_params] = name;
		out->values[out->n_params] = value;
		out->n_params++;
	}
	if (proto_reader_left(&r) != 0)
		return "startup packet has trailing bytes";
	return NULL;
}

char proto_parse_ready_for_query(const uint8_t *body, size_t len)
{
	if (len != 1 || (body[0] != 'I' && body[0] != 'T' && body[0] != 'E'))
		return 0;
	return (char)body[0];
}

bool proto_parse_error(const uint8_t *body, size_t len, ProtoErrorFields *out)
{
	out->severity = out->sqlstate = out->message = out->detail = "";
	ProtoReader r;
	proto_reader_init(&r, body, len);
	const char *sev_localized = "";
	for (;;) {
		uint8_t code = proto_read_u8(&r);
		if (r.error)
			return false;
		if (code == 0)
			break;
		const char *value = proto_read_str(&r);
		if (r.error)
			return false;
		switch (code) {
		case 'S': sev_localized = value; break;
		case 'V': out->severity = value; break;
		case 'C': out->sqlstate = value; break;
		case 'M': out->message = value; break;
		case 'D': out->detail = value; break;
		default: break;
		}
	}
	if (!*out->severity)
		out->severity = sev_localized;
	return true;
}

/* ---- builders ---- */

void proto_put_u8(Buf *b, uint8_t v) { buf_append(b, &v, 1); }

void proto_put_u16(Buf *b, uint16_t v)
{
	uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, p, 2);
}

void proto_put_u32(Buf *b, uint32_t v)
{
	uint8_t p[4];
	proto_set_u32(p, v);
	buf_append(b, p, 4);
}

void proto_put_str(Buf *b, const char *s) { buf_append(b, s, strlen(s) + 1); }

void proto_put_bytes(Buf *b, const void *p, size_t n) { buf_append(b, p, n); }

size_t proto_begin(Buf *b, char type)
{
	if (type)
		proto_put_u8(b, (uint8_t)type);
	size_t off = b->len;
	proto_put_u32(b, 0);
	return off;
}

void proto_end(Buf *b, size_t begin_offset)
{
	proto_set_u32(b->data + begin_offset, (uint32_t)(b->len - begin_offset));
}

void proto_build_error(Buf *b, const char *severity, const char *sqlstate, const char *message,
		       const char *detail, const char *hint)
{
	size_t off = proto_begin(b, 'E');
	proto_put_u8(b, 'S');
	proto_put_str(b, severity);
	proto_put_u8(b, 'V');
	proto_put_str(b, severity);
	proto_put_u8(b, 'C');
	proto_put_str(b, sqlstate);
	proto_put_u8(b, 'M');
	proto_put_str(b, message);
	if (detail && *detail) {
		proto_put_u8(b, 'D');
		proto_put_str(b, detail);
	}
	if (hint && *hint) {
		proto_put_u8(b, 'H');
		proto_put_str(b, hint);
	}
	proto_put_u8(b, 0);
	proto_end(b, off);
}

void proto_build_auth(Buf *b, uint32_t code, const void *data, size_t len)
{
	size_t off = proto_begin(b, 'R');
	proto_put_u32(b, code);
	proto_put_bytes(b, data, len);
	proto_end(b, off);
}

void proto_build_auth_sasl(Buf *b, const char *mechanism)
{
	size_t off = proto_begin(b, 'R');
	proto_put_u32(b, PROTO_AUTH_SASL);
	proto_put_str(b, mechanism);
	proto_put_u8(b, 0);
	proto_end(b, off);
}

void proto_build_parameter_status(Buf *b, const char *name, const char *value)
{
	size_t off = proto_begin(b, 'S');
	proto_put_str(b, name);
	proto_put_str(b, value);
	proto_end(b, off);
}

void proto_build_backend_key_data(Buf *b, uint32_t pid, uint32_t key)
{
	size_t off = proto_begin(b, 'K');
	proto_put_u32(b, pid);
	proto_put_u32(b, key);
	proto_end(b, off);
}

void proto_build_ready_for_query(Buf *b, char status)
{
	size_t off = proto_begin(b, 'Z');
	proto_put_u8(b, (uint8_t)status);
	proto_end(b, off);
}

void proto_build_negotiate_version(Buf *b, uint32_t newest_minor, const char *const *unknown, size_t n)
{
	size_t off = proto_begin(b, 'v');
	proto_put_u32(b, newest_minor);
	proto_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		proto_put_str(b, unknown[i]);
	proto_end(b, off);
}

void proto_build_query(Buf *b, const char *sql)
{
	size_t off = proto_begin(b, 'Q');
	proto_put_str(b, sql);
	proto_end(b, off);
}

void proto_build_startup(Buf *b, const char *const *names, const char *const *values, size_t n)
{
	size_t off = proto_begin(b, 0);
	proto_put_u32(b, PROTO_VERSION(3, 0));
	for (size_t i = 0; i < n; i++) {
		proto_put_str(b, names[i]);
		proto_put_str(b, values[i]);
	}
	proto_put_u8(b, 0);
	proto_end(b, off);
}

void proto_build_password(Buf *b, const char *password)
{
	size_t off = proto_begin(b, 'p');
	proto_put_str(b, password);
	proto_end(b, off);
}

void proto_build_sasl_initial(Buf *b, const char *mechanism, const void *data, size_t len)
{
	size_t off = proto_begin(b, 'p');
	proto_put_str(b, mechanism);
	proto_put_u32(b, (uint32_t)len);
	proto_put_bytes(b, data, len);
	proto_end(b, off);
}

void proto_build_sasl_response(Buf *b, const void *data, size_t len)
{
	size_t off = proto_begin(b, 'p');
	proto_put_bytes(b, data, len);
	proto_end(b, off);
}

void proto_build_cancel_request(Buf *b, uint32_t pid, uint32_t key)
{
	size_t off = proto_begin(b, 0);
	proto_put_u32(b, PROTO_CODE_CANCEL);
	proto_put_u32(b, pid);
	proto_put_u32(b, key);
	proto_end(b, off);
}

void proto_build_terminate(Buf *b)
{
	size_t off = proto_begin(b, 'X');
	proto_end(b, off);
}

const char *proto_frontend_type_name(uint8_t type)
{
	switch (type) {
	case 'B': return "Bind";
	case 'C': return "Close";
	case 'd': return "CopyData";
	case 'c': return "CopyDone";
	case 'f': return "CopyFail";
	case 'D': return "Describe";
	case 'E': return "Execute";
	case 'H': return "Flush";
	case 'F': return "FunctionCall";
	case 'P': return "Parse";
	case 'p': return "PasswordMessage";
	case 'Q': return "Query";
	case 'S': return "Sync";
	case 'X': return "Terminate";
	default: return "unknown";
	}
}

const char *proto_backend_type_name(uint8_t type)
{
	switch (type) {
	case 'R': return "Authentication";
	case 'K': return "BackendKeyData";
	case '2': return "BindComplete";
	case '3': return "CloseComplete";
	case 'C': return "CommandComplete";
	case 'd': return "CopyData";
	case 'c': return "CopyDone";
	case 'G': return "CopyInResponse";
	case 'H': return "CopyOutResponse";
	case 'W': return "CopyBothResponse";
	case 'D': return "DataRow";
	case 'I': return "EmptyQueryResponse";
	case 'E': return "ErrorResponse";
	case 'V': return "FunctionCallResponse";
	case 'v': return "NegotiateProtocolVersion";
	case 'n': return "NoData";
	case 'N': return "NoticeResponse";
	case 'A': return "NotificationResponse";
	case 't': return "ParameterDescription";
	case 'S': return "ParameterStatus";
	case '1': return "ParseComplete";
	case 's': return "PortalSuspended";
	case 'Z': return "ReadyForQuery";
	case 'T': return "RowDescription";
	default: return "unknown";
	}
}

bool proto_parse_bind_values(const uint8_t *bind_rest, size_t bind_len, const uint8_t *parse_rest, size_t parse_len,
			     ProtoBindValues *out)
{
	ProtoReader r;
	proto_reader_init(&r, bind_rest, bind_len);
	uint16_t n_formats = proto_read_u16(&r);
	const uint8_t *formats = proto_read_bytes(&r, 2 * (size_t)n_formats);
	uint16_t n = proto_read_u16(&r);
	if (r.error || n > PROTO_MAX_BIND_VALUES || (n_formats != 0 && n_formats != 1 && n_formats != n))
		return false;
	out->n = n;
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *f = n_formats == 0 ? NULL : formats + 2 * (n_formats == 1 ? 0 : i);
		out->binary[i] = f && (f[0] << 8 | f[1]) == 1;
		uint32_t len = proto_read_u32(&r);
		out->values[i] = len == 0xFFFFFFFFu ? NULL : proto_read_bytes(&r, len);
		out->lens[i] = len == 0xFFFFFFFFu ? 0 : len;
		out->types[i] = 0;
	}
	if (r.error)
		return false;
	if (parse_rest) {
		const uint8_t *z = memchr(parse_rest, 0, parse_len);
		ProtoReader t;
		proto_reader_init(&t, z ? z + 1 : parse_rest, z ? parse_len - (size_t)(z + 1 - parse_rest) : 0);
		uint16_t nt = z ? proto_read_u16(&t) : 0;
		for (uint16_t i = 0; i < nt && !t.error; i++) {
			uint32_t oid = proto_read_u32(&t);
			if (i < n && !t.error)
				out->types[i] = oid;
		}
	}
	return true;
}

/* The two names at the start of a Bind body (portal, statement), or false if not all buffered. */
bool proto_bind_names(const uint8_t *body, size_t have, const char **portal, const char **stmt, size_t *names_len)
{
	const uint8_t *z1 = memchr(body, 0, have);
	if (!z1)
		return false;
	const uint8_t *z2 = memchr(z1 + 1, 0, have - (size_t)(z1 + 1 - body));
	if (!z2)
		return false;
	*portal = (const char *)body;
	*stmt = (const char *)z1 + 1;
	*names_len = (size_t)(z2 + 1 - body);
	return true;
}
