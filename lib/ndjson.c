/* NDJSON: one JSON object a line, parsed and printed by libbson. */
#include <stdarg.h>
#include <string.h>

#include "imgpipe.h"

void ndjson_reader_init(struct ndjson_reader *r, FILE *in)
{
	r->in = in;
	r->cap = 4096;
	r->buf = bson_malloc(r->cap);
	r->lineno = 0;
}

void ndjson_reader_free(struct ndjson_reader *r)
{
	bson_free(r->buf);
	r->buf = NULL;
}

/* Reads one line into r->buf without its newline, growing the buffer up to
 * NDJSON_MAX_LINE.  Returns its length, -1 at end of input, -2 when the line was
 * too long (the rest of it is skipped). */
static long read_line(struct ndjson_reader *r)
{
	size_t len = 0;
	int too_long = 0;

	for (;;) {
		if (r->cap - len < 2) {
			if (r->cap > NDJSON_MAX_LINE) {
				too_long = 1;
				len = 0;
			} else {
				r->cap *= 2;
				r->buf = bson_realloc(r->buf, r->cap);
			}
		}
		if (!fgets(r->buf + len, (int)(r->cap - len), r->in)) {
			if (len == 0 && !too_long)
				return -1;
			break;
		}
		len += strlen(r->buf + len);
		if (len > 0 && r->buf[len - 1] == '\n') {
			r->buf[--len] = '\0';
			break;
		}
	}
	if (too_long)
		return -2;
	if (len > 0 && r->buf[len - 1] == '\r')
		r->buf[--len] = '\0';
	return (long)len;
}

static int blank(const char *s)
{
	return s[strspn(s, " \t\r")] == '\0';
}

int ndjson_read(struct ndjson_reader *r, bson_t **doc, bson_error_t *err)
{
	long len;

	*doc = NULL;
	do {
		len = read_line(r);
		if (len == -1)
			return 0;
		r->lineno++;
	} while (len >= 0 && blank(r->buf));

	if (len == -2) {
		bson_set_error(err, 0, 0, "input line %lu is longer than %d bytes",
			       r->lineno, NDJSON_MAX_LINE);
		return -1;
	}
	*doc = bson_new_from_json((const uint8_t *)r->buf, len, err);
	return *doc ? 1 : -1;
}

int ndjson_write(FILE *out, const bson_t *doc)
{
	size_t len;
	char *json = bson_as_relaxed_extended_json(doc, &len);
	int rc = 0;

	if (!json)
		return -1;
	if (fwrite(json, 1, len, out) != len || putc('\n', out) == EOF)
		rc = -1;
	bson_free(json);
	return rc;
}

bson_t *ndjson_bad_line(unsigned long lineno, const char *message)
{
	bson_t line = BSON_INITIALIZER;
	bson_t *rec;

	BSON_APPEND_INT64(&line, "input_line", (int64_t)lineno);
	rec = rec_error(&line, "input line %lu is not a JSON object: %s", lineno, message);
	bson_destroy(&line);
	return rec;
}

const char *rec_str(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return NULL;
}

int64_t rec_int(const bson_t *doc, const char *key, int64_t fallback)
{
	bson_iter_t it;
	if (!bson_iter_init_find(&it, doc, key))
		return fallback;
	if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it))
		return bson_iter_as_int64(&it);
	if (BSON_ITER_HOLDS_DOUBLE(&it)) {
		double d = bson_iter_double(&it);
		if (d == (double)(int64_t)d)
			return (int64_t)d;
	}
	return fallback;
}

bool rec_next_doc(bson_iter_t *it, bson_t *doc)
{
	uint32_t len;
	const uint8_t *data;

	while (bson_iter_next(it))
		if (BSON_ITER_HOLDS_DOCUMENT(it)) {
			bson_iter_document(it, &len, &data);
			if (bson_init_static(doc, data, len))
				return true;
		}
	return false;
}

int rec_has_error(const bson_t *doc)
{
	return bson_has_field(doc, "error");
}

bson_t *rec_error(const bson_t *doc, const char *fmt, ...)
{
	va_list ap;
	bson_t *out = bson_new();
	char *why, *named;

	va_start(ap, fmt);
	why = bson_strdupv_printf(fmt, ap);
	va_end(ap);
	named = bson_strdup_printf("%s: %s", program_invocation_short_name, why);
	bson_copy_to_excluding_noinit(doc, out, "error", NULL);
	BSON_APPEND_UTF8(out, "error", named);
	bson_free(named);
	bson_free(why);
	return out;
}
