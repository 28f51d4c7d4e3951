/* libFuzzer target for lib/csvin.c.  Any input is parsed with the default limits and
 * with tiny ones, whole and in pieces of 1 to 7 bytes: both feedings must give the same
 * records, every record must become JSON, csvin_check must agree with the stream about
 * the header, and nothing may crash, leak or overflow. */
#include <stdlib.h>
#include <string.h>

#include "csvin.h"

/* Appends the row's record, as JSON, to the output. */
static int collect(const struct csvin_row *row, void *arg)
{
	bson_t rec = BSON_INITIALIZER;
	char *json;

	if (csvin_record(row, "fuzz", &rec) != 0)
		abort();
	if (!(json = bson_as_relaxed_extended_json(&rec, NULL)))
		abort();   /* a string that is not UTF-8 got into a record */
	bson_string_append(arg, json);
	bson_string_append_c(arg, '\n');
	bson_free(json);
	bson_destroy(&rec);
	return 0;
}

/* Every record and the input error, fed in pieces of the given size. */
static char *parse(const uint8_t *data, size_t size, const struct csvin_limits *lim,
		   size_t piece)
{
	bson_string_t *out = bson_string_new(NULL);
	struct csvin *c = csvin_new(lim, collect, out);
	int rc = CSVIN_OK;

	if (!c)
		abort();
	for (size_t i = 0; i < size && rc == CSVIN_OK; i += piece)
		rc = csvin_feed(c, data + i, size - i < piece ? size - i : piece);
	if (rc == CSVIN_OK)
		rc = csvin_finish(c);
	if (rc == CSVIN_EINPUT)
		bson_string_append_printf(out, "EINPUT %s\n", csvin_error(c));
	csvin_free(c);
	return bson_string_free(out, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct csvin_limits tiny = { 16, 2, 3 };
	size_t piece = 1 + size % 7;
	char why[256];
	char *whole = parse(data, size, NULL, SIZE_MAX);
	char *pieces = parse(data, size, NULL, piece);
	char *tiny_whole = parse(data, size, &tiny, SIZE_MAX);
	char *tiny_pieces = parse(data, size, &tiny, piece);
	int checked = csvin_check((const char *)data, size, why, sizeof why);

	if (strcmp(whole, pieces) != 0 || strcmp(tiny_whole, tiny_pieces) != 0)
		abort();
	if (checked == 0 && strstr(whole, "EINPUT ") == whole)
		abort();
	bson_free(whole);
	bson_free(pieces);
	bson_free(tiny_whole);
	bson_free(tiny_pieces);
	return 0;
}
