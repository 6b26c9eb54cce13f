/*
 * fuzz_wal_parse — feeds: lines of test_decoding output as the WAL listener receives them (one
 * line per CopyData, not NUL-terminated), each to wal_line_kind, then every table name through
 * wal_parse_table_line, then wal_parse_key_values for a key column. The first line of the input
 * names the key column; the others are the lines.
 * Checks: no memory error or undefined behaviour (each line is an exact-size copy, so a read past
 * its end is caught); names fit their buffers and are NUL-terminated; *pos only moves forward and
 * stays within the line; at most two key values, each NUL-terminated within WAL_KEY_MAX.
 */
#include "fuzz.h"
#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	char *column = fuzz_strndup(data, (size_t)(nl - data));
	size_t pos0 = (size_t)(nl - data) + 1;
	while (pos0 < size) {
		const uint8_t *end = memchr(data + pos0, '\n', size - pos0);
		size_t len = end ? (size_t)(end - (data + pos0)) : size - pos0;
		char *line = (char *)fuzz_memdup(data + pos0, len);
		pos0 += len + 1;
		if (wal_line_kind(line, len) == WAL_LINE_TABLE) {
			char schema[64], name[64];
			size_t pos = 0, last = 0;
			int r;
			int guard = 0;
			while ((r = wal_parse_table_line(line, len, &pos, schema, sizeof schema, name, sizeof name)) == 1) {
				FUZZ_ASSERT(pos > last && pos <= len);
				FUZZ_ASSERT(memchr(schema, 0, sizeof schema) && memchr(name, 0, sizeof name));
				last = pos;
				FUZZ_ASSERT(++guard < 100000);
			}
			if (r == 0) {
				FUZZ_ASSERT(pos <= len);
				WalKeyValues kv;
				wal_parse_key_values(line, len, pos, *column ? column : "id", &kv);
				FUZZ_ASSERT(kv.n <= 2);
				for (size_t i = 0; i < kv.n; i++)
					FUZZ_ASSERT(memchr(kv.values[i], 0, WAL_KEY_MAX) != NULL);
			}
		}
		free(line);
	}
	(void)wal_slot_name_valid(column);
	free(column);
	return 0;
}
