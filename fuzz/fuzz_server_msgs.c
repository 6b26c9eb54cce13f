/*
 * fuzz_server_msgs — feeds: everything a PostgreSQL server sends on one connection: the login
 * (authentication requests, ParameterStatus, BackendKeyData, NegotiateProtocolVersion, notices,
 * errors, ReadyForQuery), then replies to requests pgrelay has in flight. The first input byte
 * picks the read size and the read buffer size; the next byte the number n (0..15) of requests
 * in flight and the n bytes after it their kinds and flags (PIPE_INTERNAL), pushed on a
 * Pipeline. The real relay_process reader frames the stream (split reads, bodies larger than the
 * buffer, growth and compaction); its callback decodes each message as the server connection
 * does: authentication requests (code, md5 salt, the SASL mechanism list, SASL data), the
 * ParameterStatus pair into a ParamList (params_set), BackendKeyData, ErrorResponse/Notice
 * fields with proto_parse_error, ReadyForQuery with proto_parse_ready_for_query, CommandComplete
 * tags, pgrelay's own LSN DataRow, pipeline_reply for every reply; the replies of a request are
 * collected as the result cache collects them and checked with cache_entry_check_reply at
 * ReadyForQuery.
 * Checks: no memory error, leak or undefined behaviour; a ReadyForQuery status is I, T or E;
 * the reader never reports more bytes buffered than the message has.
 */
#include "buf.h"
#include "cache_entry.h"
#include "params.h"
#include "pipeline.h"
#include "proto.h"
#include "stream.h"

typedef struct Owner {
	bool login;
	Pipeline pipe;
	ParamList params;
	Buf reply; /* whole forwarded replies since the last ReadyForQuery */
	bool reply_partial;
	size_t buffer_size;
} Owner;

static void on_end(void *ctx, const PipeEntry *e, PipeEnd how)
{
	(void)ctx;
	FUZZ_ASSERT(e->kind >= PIPE_QUERY && e->kind <= PIPE_COPY_END);
	FUZZ_ASSERT(how == PIPE_END_DONE || how == PIPE_END_FAILED || how == PIPE_END_SKIPPED);
}

static void auth_request(const uint8_t *body, size_t len)
{
	ProtoReader r;
	proto_reader_init(&r, body, len);
	uint32_t code = proto_read_u32(&r);
	switch (code) {
	case PROTO_AUTH_MD5:
		(void)proto_read_bytes(&r, 4);
		break;
	case PROTO_AUTH_SASL:
		for (;;) {
			const char *mech = proto_read_str(&r);
			if (r.error || !*mech)
				break;
		}
		break;
	case PROTO_AUTH_SASL_CONTINUE:
	case PROTO_AUTH_SASL_FINAL:
		FUZZ_ASSERT(len >= 4);
		break;
	default:
		break;
	}
}

static RelayAction on_message(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
			      size_t avail)
{
	(void)rc;
	Owner *o = owner;
	FUZZ_ASSERT(avail <= total && total >= PROTO_HEADER_LEN && avail >= PROTO_HEADER_LEN);
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t len = total - PROTO_HEADER_LEN;
	ProtoReader r;
	proto_reader_init(&r, body, len);
	if (o->login) {
		if (avail < total)
			return RELAY_NEED_BODY;
		switch (type) {
		case 'R':
			auth_request(body, len);
			return RELAY_DROP;
		case 'S': {
			const char *name = proto_read_str(&r);
			const char *value = proto_read_str(&r);
			if (!r.error)
				params_set(&o->params, name, value);
			return RELAY_DROP;
		}
		case 'K':
			(void)proto_read_u32(&r);
			(void)proto_read_u32(&r);
			return RELAY_DROP;
		case 'E': {
			ProtoErrorFields f;
			(void)proto_parse_error(body, len, &f);
			FUZZ_ASSERT(f.severity && f.sqlstate && f.message && f.detail);
			return RELAY_ERROR;
		}
		case 'N': case 'v':
			return RELAY_DROP;
		case 'Z': {
			char st = proto_parse_ready_for_query(body, len);
			if (!st)
				return RELAY_ERROR;
			FUZZ_ASSERT(st == 'I' || st == 'T' || st == 'E');
			o->login = false;
			return RELAY_DROP;
		}
		default:
			return RELAY_ERROR;
		}
	}
	bool whole_needed = type == 'Z' || type == 'S' || type == 'E' || type == 'C' ||
			    (total <= o->buffer_size && (type == 'T' || type == 'D'));
	if (avail < total && whole_needed)
		return RELAY_NEED_BODY;
	uint8_t flags = pipeline_reply(&o->pipe, type, on_end, o);
	if (avail < total) {
		o->reply_partial = true;
		return RELAY_FORWARD;
	}
	switch (type) {
	case 'Z': {
		char st = proto_parse_ready_for_query(body, len);
		if (!st)
			return RELAY_ERROR;
		FUZZ_ASSERT(st == 'I' || st == 'T' || st == 'E');
		if (!o->reply_partial) {
			static const CacheShape shapes[] = {CACHE_SHAPE_UNKNOWN, CACHE_SHAPE_QUERY, CACHE_SHAPE_EXECUTE};
			for (size_t i = 0; i < 3; i++)
				(void)cache_entry_check_reply(buf_head(&o->reply), buf_used(&o->reply), shapes[i]);
		}
		buf_reset(&o->reply);
		o->reply_partial = false;
		(void)pipeline_idle(&o->pipe);
		return RELAY_DROP;
	}
	case 'S': {
		const char *name = proto_read_str(&r);
		const char *value = proto_read_str(&r);
		if (r.error)
			return RELAY_ERROR;
		params_set(&o->params, name, value);
		(void)params_is_settable_report(name);
		return RELAY_DROP;
	}
	case 'E': case 'N': {
		ProtoErrorFields f;
		(void)proto_parse_error(body, len, &f);
		FUZZ_ASSERT(f.severity && f.sqlstate && f.message && f.detail);
		break;
	}
	case 'C': {
		const char *tag = (const char *)body;
		(void)(len == sizeof "DISCARD ALL" && memcmp(tag, "DISCARD ALL", sizeof "DISCARD ALL" - 1) == 0);
		break;
	}
	case 'D':
		if (flags & PIPE_INTERNAL) {
			/* pgrelay's own LSN query: one text column */
			if (proto_read_u16(&r) == 1) {
				uint32_t n = proto_read_u32(&r);
				const uint8_t *v = n < 64 ? proto_read_bytes(&r, n) : NULL;
				char text[64];
				if (v) {
					memcpy(text, v, n);
					text[n] = 0;
				}
			}
			return RELAY_DROP;
		}
		break;
	default:
		break;
	}
	if (flags & PIPE_INTERNAL)
		return RELAY_DROP;
	if (buf_used(&o->reply) < (1u << 20))
		buf_append(&o->reply, msg, total);
	else
		o->reply_partial = true;
	return RELAY_FORWARD;
}

static const RelayOps ops = {.message = on_message};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t piece = 1 + (size_t)(data[0] & 0x3f) * 7;
	size_t buf_size = (data[0] & 0x40) ? 64 : 8192;
	Owner o = {.login = !(data[0] & 0x80), .buffer_size = buf_size};
	pipeline_init(&o.pipe);
	params_init(&o.params);
	buf_init(&o.reply);
	size_t n = data[1] & 0x0f, at = 2;
	for (size_t i = 0; i < n && at < size; i++, at++)
		(void)pipeline_push(&o.pipe, (PipeKind)(PIPE_QUERY + data[at] % PIPE_COPY_END),
				    (data[at] & 0x80) ? PIPE_INTERNAL : 0, 0);
	FuzzStream s;
	fuzz_stream_init(&s, data + at, size - at, buf_size, 1u << 20, piece);
	while (fuzz_stream_read(&s)) {
		const char *why;
		RelayResult res = relay_process(&s.conn, NULL, &ops, &o, &why);
		if (res == RELAY_BAD_INPUT || res == RELAY_CLOSED_OWNER)
			break;
		FUZZ_ASSERT(s.conn.in_pos <= s.conn.in_len && s.conn.in_len <= s.conn.in_cap);
	}
	fuzz_stream_free(&s);
	buf_free(&o.reply);
	params_free(&o.params);
	pipeline_free(&o.pipe);
	return 0;
}
