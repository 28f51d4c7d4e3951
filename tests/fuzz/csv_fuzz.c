/* libFuzzer target for lib/csvin.c and lib/csvout.c.  Any input is parsed with the
 * default limits and with tiny ones, whole and in pieces of 1 to 7 bytes: both feedings
 * must give the same records, every record must become JSON, csvout's line for it must
 * hold the same JSON as csvin_record's, csvin_check must agree with the stream about the
 * header, and nothing may crash, leak or overflow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "csvin.h"

/* The records of one parse: as libbson prints csvin_record's, and as csvout writes them
 * into a memory stream, one writer for all rows. */
struct sink {
	bson_string_t *out;
	struct csvin_writer *w;
	FILE *mem;
	char *text;
	size_t len, seen;   /* bytes in text; those of lines already compared */
};

/* Whether csvout's line for row holds the same JSON value as json. */
static int same_json(struct sink *s, const struct csvin_row *row, const char *json)
{
	json_object *a, *b;
	int same;

	if (csvin_write(s->w, row) != 0 || fflush(s->mem) != 0)
		abort();
	a = json_tokener_parse(s->text + s->seen);
	b = json_tokener_parse(json);
	s->seen = s->len;
	same = a && b && json_object_equal(a, b);
	json_object_put(a);
	json_object_put(b);
	return same;
}

/* Appends the row's record, as JSON, to the output. */
static int collect(const struct csvin_row *row, void *arg)
{
	struct sink *s = arg;
	bson_t rec = BSON_INITIALIZER;
	char *json;

	if (csvin_record(row, "fuzz", &rec) != 0)
		abort();
	if (!(json = bson_as_relaxed_extended_json(&rec, NULL)))
		abort();   /* a string that is not UTF-8 got into a record */
	if (!same_json(s, row, json))
		abort();
	bson_string_append(s->out, json);
	bson_string_append_c(s->out, '\n');
	bson_free(json);
	bson_destroy(&rec);
	return 0;
}

/* Every record and the input error, fed in pieces of the given size. */
static char *parse(const uint8_t *data, size_t size, const struct csvin_limits *lim,
		   size_t piece)
{
	struct sink s = { bson_string_new(NULL), NULL, NULL, NULL, 0, 0 };
	struct csvin *c = csvin_new(lim, collect, &s);
	int rc = CSVIN_OK;

	if (!c || !(s.mem = open_memstream(&s.text, &s.len)) ||
	    !(s.w = csvin_writer_new(s.mem, "fuzz", false)))
		abort();
	for (size_t i = 0; i < size && rc == CSVIN_OK; i += piece)
		rc = csvin_feed(c, data + i, size - i < piece ? size - i : piece);
	if (rc == CSVIN_OK)
		rc = csvin_finish(c);
	if (rc == CSVIN_EINPUT)
		bson_string_append_printf(s.out, "EINPUT %s\n", csvin_error(c));
	csvin_free(c);
	csvin_writer_free(s.w);
	fclose(s.mem);
	free(s.text);
	return bson_string_free(s.out, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct csvin_limits tiny = { 16, 2, 3 };
	size_t piece = 1 + size % 7;
	char why[256];
	uint64_t images;
	char *whole = parse(data, size, NULL, SIZE_MAX);
	char *pieces = parse(data, size, NULL, piece);
	char *tiny_whole = parse(data, size, &tiny, SIZE_MAX);
	char *tiny_pieces = parse(data, size, &tiny, piece);
	int checked = csvin_check((const char *)data, size, &images, why, sizeof why);

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
