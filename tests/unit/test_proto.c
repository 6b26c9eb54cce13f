/* Unit tests for the protocol codec: framing, startup packets, error fields, builders. */
#include "proto.h"
#include "unit.h"

TEST(frame_header)
{
	uint8_t type;
	size_t total;
	const uint8_t rfq[] = {'Z', 0, 0, 0, 5, 'I'};
	CHECK_INT(proto_frame(rfq, 4, &type, &total), 0);
	CHECK_INT(proto_frame(rfq, sizeof(rfq), &type, &total), 1);
	CHECK_INT(type, 'Z');
	CHECK_INT(total, 6);
	const uint8_t bad[] = {'Q', 0, 0, 0, 3};
	CHECK_INT(proto_frame(bad, sizeof(bad), &type, &total), -1);
	/* Length words PostgreSQL can never send or accept: 1 GB and up, negative as int32. */
	const uint8_t huge[] = {'S', 0x80, 0, 0, 0};
	CHECK_INT(proto_frame(huge, sizeof(huge), &type, &total), -1);
	const uint8_t gb[] = {'d', 0x40, 0, 0, 0};
	CHECK_INT(proto_frame(gb, sizeof(gb), &type, &total), -1);
	const uint8_t largest[] = {'d', 0x3f, 0xff, 0xff, 0xff};
	CHECK_INT(proto_frame(largest, sizeof(largest), &type, &total), 1);
}

TEST(startup_roundtrip)
{
	Buf b;
	buf_init(&b);
	const char *names[] = {"user", "database", "application_name"};
	const char *values[] = {"app", "users", "psql"};
	proto_build_startup(&b, names, values, 3);
	ProtoStartup st;
	CHECK(proto_parse_startup(buf_head(&b), buf_used(&b), &st) == NULL);
	CHECK_INT(st.code, PROTO_VERSION(3, 0));
	REQUIRE(st.n_params == 3);
	CHECK_STR(st.names[1], "database");
	CHECK_STR(st.values[2], "psql");
	/* truncated: missing final terminator */
	b.len--;
	proto_set_u32(b.data, (uint32_t)buf_used(&b));
	CHECK(proto_parse_startup(buf_head(&b), buf_used(&b), &st) != NULL);
	buf_free(&b);
}

TEST(startup_special_codes)
{
	const uint8_t ssl[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	ProtoStartup st;
	CHECK(proto_parse_startup(ssl, sizeof(ssl), &st) == NULL);
	CHECK_INT(st.code, PROTO_CODE_SSL);
	Buf b;
	buf_init(&b);
	proto_build_cancel_request(&b, 1234, 0xdeadbeef);
	CHECK_INT(buf_used(&b), 16);
	CHECK(proto_parse_startup(buf_head(&b), buf_used(&b), &st) == NULL);
	CHECK_INT(st.code, PROTO_CODE_CANCEL);
	CHECK_INT(st.cancel_pid, 1234);
	CHECK_INT(st.cancel_key, 0xdeadbeef);
	/* length field disagreeing with the packet */
	const uint8_t liar[] = {0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f};
	CHECK(proto_parse_startup(liar, sizeof(liar), &st) != NULL);
	/* protocol 2.0 parses (the caller rejects the version) */
	const uint8_t v2[] = {0, 0, 0, 8, 0, 2, 0, 0};
	CHECK(proto_parse_startup(v2, sizeof(v2), &st) == NULL);
	CHECK_INT(st.code >> 16, 2);
	buf_free(&b);
}

TEST(error_roundtrip)
{
	Buf b;
	buf_init(&b);
	proto_build_error(&b, "FATAL", "28P01", "password authentication failed for user \"app\"", NULL, "check it");
	uint8_t type;
	size_t total;
	REQUIRE(proto_frame(buf_head(&b), buf_used(&b), &type, &total) == 1);
	CHECK_INT(type, 'E');
	CHECK_INT(total, buf_used(&b));
	ProtoErrorFields f;
	CHECK(proto_parse_error(buf_head(&b) + 5, total - 5, &f));
	CHECK_STR(f.severity, "FATAL");
	CHECK_STR(f.sqlstate, "28P01");
	CHECK_STR(f.message, "password authentication failed for user \"app\"");
	/* unterminated field list */
	const uint8_t bad[] = {'M', 'x'};
	CHECK(!proto_parse_error(bad, sizeof(bad), &f));
	buf_free(&b);
}

TEST(reader_bounds)
{
	const uint8_t body[] = {0, 0, 0, 7, 'a', 'b'};
	ProtoReader r;
	proto_reader_init(&r, body, sizeof(body));
	CHECK_INT(proto_read_u32(&r), 7);
	CHECK_STR(proto_read_str(&r), ""); /* "ab" is not terminated */
	CHECK(r.error);
	proto_reader_init(&r, body, 3);
	proto_read_u32(&r);
	CHECK(r.error);
	CHECK(proto_read_bytes(&r, 1) == NULL);
}

TEST(builders_bytes)
{
	Buf b;
	buf_init(&b);
	proto_build_ready_for_query(&b, 'T');
	const uint8_t rfq[] = {'Z', 0, 0, 0, 5, 'T'};
	CHECK_INT(buf_used(&b), sizeof(rfq));
	CHECK(memcmp(buf_head(&b), rfq, sizeof(rfq)) == 0);
	buf_reset(&b);
	proto_build_query(&b, "SELECT 1");
	const uint8_t q[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
	CHECK_INT(buf_used(&b), sizeof(q));
	CHECK(memcmp(buf_head(&b), q, sizeof(q)) == 0);
	buf_reset(&b);
	proto_build_auth_sasl(&b, "SCRAM-SHA-256");
	/* 'R' len code=10 "SCRAM-SHA-256\0" "\0" */
	CHECK_INT(buf_used(&b), 1 + 4 + 4 + 14 + 1);
	CHECK_INT(proto_get_u32(buf_head(&b) + 5), 10);
	buf_reset(&b);
	proto_build_parameter_status(&b, "TimeZone", "UTC");
	CHECK_INT(proto_get_u32(buf_head(&b) + 1), 4 + 9 + 4);
	buf_free(&b);
}

TEST(ready_for_query_body)
{
	/* A ReadyForQuery from a server with an empty body (length word 4): the server reader used to
	 * look at one byte past the message. The same stream, as fuzz_server_msgs takes it, is
	 * fuzz/corpus/server_msgs/regress-ready-empty. */
	static const uint8_t stream[] = {0x40, 0x00, 'Z', 0, 0, 0, 4};
	uint8_t type;
	size_t total;
	CHECK_INT(proto_frame(stream + 2, sizeof stream - 2, &type, &total), 1);
	CHECK_INT(total, 5);
	uint8_t *body = malloc(1); /* nothing of the message after the header */
	CHECK_INT(proto_parse_ready_for_query(body, 0), 0);
	free(body);
	CHECK_INT(proto_parse_ready_for_query((const uint8_t *)"I", 1), 'I');
	CHECK_INT(proto_parse_ready_for_query((const uint8_t *)"T", 1), 'T');
	CHECK_INT(proto_parse_ready_for_query((const uint8_t *)"E", 1), 'E');
	CHECK_INT(proto_parse_ready_for_query((const uint8_t *)"X", 1), 0);
	CHECK_INT(proto_parse_ready_for_query((const uint8_t *)"II", 2), 0);
}

int main(void)
{
	RUN(frame_header);
	RUN(ready_for_query_body);
	RUN(startup_roundtrip);
	RUN(startup_special_codes);
	RUN(error_roundtrip);
	RUN(reader_bounds);
	RUN(builders_bytes);
	return unit_summary();
}
