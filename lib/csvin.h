/* csvin: the product CSV of docs/design.md ("Stage records", csvsplit) read as a stream on
 * libcsv.  It matches the header, validates each data row, splits the image URLs and
 * enforces limits, handing each row (valid or not) to a callback in file order.
 * Memory stays bounded whatever the input (about twice the field limit for libcsv, plus
 * the required fields of one row); only the set of serial numbers seen grows, by a
 * 12-byte slot a valid row in a table kept 40 to 80% full. */
#ifndef CSVIN_H
#define CSVIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <bson/bson.h>

/* Default limits (csvsplit's --max-field-bytes, --max-urls, --max-rows). */
#define CSVIN_MAX_FIELD_BYTES (64 * 1024)
#define CSVIN_MAX_URLS 64
#define CSVIN_MAX_ROWS 1000000

struct csvin_limits {
	size_t max_field_bytes;  /* bytes in one field (at least 16) */
	size_t max_urls;         /* image URLs in one row */
	uint64_t max_rows;       /* data rows in one input */
};

/* One data row.  Valid when error is NULL; then the other fields are set.
 * Every pointer lives until the callback returns. */
struct csvin_row {
	uint64_t line;              /* the line on which the row starts (the header is line 1) */
	const char *error;          /* why the row is invalid, or NULL */
	int64_t serial_no;
	const char *product_name;
	const char *const *urls;    /* nurls absolute http(s) URLs, trimmed */
	size_t nurls;
	int64_t rank;               /* its place in serial order among the valid rows, from 0;
	                             * -1 (csvin's rows) when not known */
};

/* Called once for each data row, in file order.  A non-zero return stops the parse. */
typedef int (*csvin_row_fn)(const struct csvin_row *row, void *arg);

/* What csvin_feed and csvin_finish return. */
enum {
	CSVIN_OK = 0,
	CSVIN_EINPUT = -1,   /* not a product CSV: empty, not text, bad header (csvin_error) */
	CSVIN_ESTOP = -2     /* the row callback returned non-zero */
};

struct csvin;

/* A parser with the given limits (NULL: the defaults) calling fn(row, arg) for each row.
 * Returns NULL when out of memory. */
struct csvin *csvin_new(const struct csvin_limits *limits, csvin_row_fn fn, void *arg);
/* Parses the next len bytes of input, in chunks of any size. */
int csvin_feed(struct csvin *c, const void *buf, size_t len);
/* Ends the input: parses a last row without a newline, checks that there was a header. */
int csvin_finish(struct csvin *c);
/* Why the input is not a product CSV, after CSVIN_EINPUT; names what was expected. */
const char *csvin_error(const struct csvin *c);
void csvin_free(struct csvin *c);

/* Appends row to out as docs/design.md's csvsplit record: {"line", "serial_no",
 * "product_name", "input_image_urls", "rank" when it is known} or {"line", "error"}, then
 * "batch_id" when batch_id is not NULL.  Returns 0, or -1 when out would grow too large. */
int csvin_record(const struct csvin_row *row, const char *batch_id, bson_t *out);

/* The same records written as NDJSON lines on out by json-c (lib/csvout.c), several
 * times faster than csvin_record and ndjson_write: one set of JSON values is refilled for
 * each row.  A ranked writer adds each valid row's "rank".  batch_id (added to every
 * record unless NULL) must be UTF-8.  csvin_writer_new returns NULL when out of memory. */
struct csvin_writer;
struct csvin_writer *csvin_writer_new(FILE *out, const char *batch_id, bool ranked);
/* Writes row's record and a newline, with a valid row's "rank" when the writer is ranked.
 * Returns 0, or -1 on an error of out or of memory. */
int csvin_write(struct csvin_writer *w, const struct csvin_row *row);
void csvin_writer_free(struct csvin_writer *w);

/* Checks a whole CSV held in memory (an upload): 0 when it is UTF-8 text with a valid
 * header and at least one row (valid or not), else -1 with a precise reason in why
 * (NUL-terminated, cut to whylen).  *images gets the number of image URLs in its valid
 * rows: the images its batch would process. */
int csvin_check(const char *buf, size_t len, uint64_t *images, char *why, size_t whylen);

#endif
