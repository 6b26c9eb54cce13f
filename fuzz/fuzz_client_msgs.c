/*
 * fuzz_client_msgs — feeds: everything a client sends on one connection: startup-family packets
 * until a StartupMessage, then regular messages (Query, Parse, Bind, Describe, Execute, Close,
 * Sync, Flush, FunctionCall, CopyData/Done/Fail, PasswordMessage/SASL responses, Terminate). The
 * first input byte picks the read size and the read buffer size (so messages arrive split and
 * larger than the buffer). The startup phase frames packets as the client's startup reader does
 * (length 8 .. PROTO_STARTUP_MAX_LEN, the buffer grown with conn_make_room); the message phase
 * runs the real relay_process reader, whose callback asks for whole bodies and decodes them as
 * pgrelay does: proto_parse_startup; Query text through sqlclass_might_matter; Parse name, text
 * and parameter types; Bind's portal and statement names (also from a partial body) and its
 * parameters with proto_parse_bind_values against the last Parse; Describe/Close; Execute;
 * the SASLInitialResponse layout (mechanism, length, data); FunctionCall.
 * Checks: no memory error, leak or undefined behaviour in framing, buffer growth, compaction or
 * the decoders; decoded Bind values lie inside the message; the reader never reports more bytes
 * buffered than the message has.
 */
#include "params.h"
#include "proto.h"
#include "sqlclass.h"
#include "stream.h"

typedef struct Owner {
	uint8_t *parse_rest; /* the last Parse's body after its name */
	size_t parse_len;
	size_t buffer_size;
	int messages;
} Owner;

static void read_bind(Owner *o, const uint8_t *body, size_t len)
{
	ProtoReader r;
	proto_reader_init(&r, body, len);
	(void)proto_read_str(&r);
	(void)proto_read_str(&r);
	if (r.error)
		return;
	ProtoBindValues v;
	if (proto_parse_bind_values(body + r.pos, len - r.pos, o->parse_rest, o->parse_len, &v)) {
		FUZZ_ASSERT(v.n <= PROTO_MAX_BIND_VALUES);
		for (size_t i = 0; i < v.n; i++)
			if (v.values[i])
				FUZZ_ASSERT(v.values[i] >= body && v.values[i] + v.lens[i] <= body + len);
	}
}

static RelayAction on_message(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
			      size_t avail)
{
	(void)rc;
	Owner *o = owner;
	FUZZ_ASSERT(avail <= total && total >= PROTO_HEADER_LEN && avail >= PROTO_HEADER_LEN);
	o->messages++;
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t have = avail - PROTO_HEADER_LEN, len = total - PROTO_HEADER_LEN;
	switch (type) {
	case 'Q': case 'P': case 'B': case 'D': case 'E': case 'C': case 'H': case 'S': case 'F':
	case 'd': case 'c': case 'f': case 'p':
		break;
	case 'X':
		return RELAY_DROP | RELAY_AFTER_STOP;
	default:
		return RELAY_ERROR;
	}
	if (avail < total) {
		/* as the statement layer: whole Query/Parse up to the buffer size, else streamed */
		if ((type == 'Q' || type == 'P' || type == 'p') && total <= o->buffer_size)
			return RELAY_NEED_BODY;
		if (type == 'B') {
			const uint8_t *z1 = memchr(body, 0, have);
			if (!z1 || !memchr(z1 + 1, 0, have - (size_t)(z1 + 1 - body)))
				return RELAY_NEED_BODY;
		}
		if (type == 'E' || type == 'D' || type == 'C' || type == 'F')
			return RELAY_NEED_BODY;
		return RELAY_FORWARD;
	}
	ProtoReader r;
	proto_reader_init(&r, body, len);
	switch (type) {
	case 'Q':
		(void)sqlclass_might_matter((const char *)body, strnlen((const char *)body, len));
		break;
	case 'P': {
		(void)proto_read_str(&r);
		size_t name_end = r.pos;
		(void)proto_read_str(&r);
		uint16_t n = proto_read_u16(&r);
		for (uint16_t i = 0; i < n && !r.error; i++)
			(void)proto_read_u32(&r);
		if (!r.error) {
			free(o->parse_rest);
			o->parse_len = len - name_end;
			o->parse_rest = fuzz_memdup(body + name_end, o->parse_len);
		}
		break;
	}
	case 'B':
		read_bind(o, body, len);
		break;
	case 'D': case 'C':
		(void)proto_read_u8(&r);
		(void)proto_read_str(&r);
		break;
	case 'E':
		(void)proto_read_str(&r);
		(void)proto_read_u32(&r);
		break;
	case 'F': {
		(void)proto_read_u32(&r);
		uint16_t nf = proto_read_u16(&r);
		for (uint16_t i = 0; i < nf && !r.error; i++)
			(void)proto_read_u16(&r);
		uint16_t na = proto_read_u16(&r);
		for (uint16_t i = 0; i < na && !r.error; i++) {
			uint32_t l = proto_read_u32(&r);
			if (l != 0xffffffffu)
				(void)proto_read_bytes(&r, l);
		}
		break;
	}
	case 'p': {
		/* SASLInitialResponse, as the login reads it; also a PasswordMessage's string */
		const char *mech = proto_read_str(&r);
		uint32_t dlen = proto_read_u32(&r);
		const uint8_t *d = r.error || dlen == 0xffffffffu ? NULL : proto_read_bytes(&r, dlen);
		if (d)
			FUZZ_ASSERT(d >= body && d + dlen <= body + len && strlen(mech) < len);
		ProtoReader r2;
		proto_reader_init(&r2, body, len);
		(void)proto_read_str(&r2);
		break;
	}
	default:
		break;
	}
	return RELAY_DROP;
}

static const RelayOps ops = {.message = on_message};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t piece = 1 + (size_t)(data[0] & 0x3f) * 7;
	size_t buf_size = (data[0] & 0x40) ? 64 : 8192;
	Owner o = {.buffer_size = buf_size};
	FuzzStream s;
	fuzz_stream_init(&s, data + 1, size - 1, buf_size, 1u << 20, piece);
	Conn *c = &s.conn;
	bool startup = true, done = false;
	while (!done && fuzz_stream_read(&s)) {
		while (startup) {
			size_t avail = c->in_len - c->in_pos;
			if (avail < 4)
				break;
			uint32_t len = proto_get_u32(c->in + c->in_pos);
			if (len < 8 || len > PROTO_STARTUP_MAX_LEN) {
				done = true;
				break;
			}
			if (avail < len) {
				FUZZ_ASSERT(conn_make_room(c, len));
				break;
			}
			ProtoStartup st;
			const char *err = proto_parse_startup(c->in + c->in_pos, len, &st);
			c->in_pos += len;
			if (err || st.code == PROTO_CODE_CANCEL) {
				done = true;
				break;
			}
			if (st.code >> 16 == 3)
				startup = false;
		}
		if (done || startup)
			continue;
		const char *why;
		RelayResult res = relay_process(c, NULL, &ops, &o, &why);
		if (res == RELAY_BAD_INPUT || res == RELAY_STOPPED || res == RELAY_CLOSED_OWNER)
			break;
		FUZZ_ASSERT(c->in_pos <= c->in_len && c->in_len <= c->in_cap);
	}
	free(o.parse_rest);
	fuzz_stream_free(&s);
	return 0;
}
