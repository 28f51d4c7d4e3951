/* MongoDB access shared by dbrecord and the CGI (see db.h): batches, their status, and
 * the status JSON and CSV of GET /status/ID.  Progress is the counters dbrecord keeps in
 * the batch; the products are read a page at a time (lib/products.c). */
#include <csv.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"

const char *const db_statuses[DB_STATUS_COUNT + 1] = { "in queue", "in progress", "completed", "failed", NULL };

int db_status_valid(const char *status)
{
	for (const char *const *s = db_statuses; *s; s++)
		if (strcmp(*s, status) == 0)
			return 1;
	return 0;
}

/* Releases the handles without ending the driver, so db_open may be tried again. */
static void db_release(struct db *d)
{
	mongoc_collection_destroy(d->sources);
	mongoc_collection_destroy(d->products);
	mongoc_collection_destroy(d->batches);
	mongoc_database_destroy(d->database);
	mongoc_client_destroy(d->client);
	memset(d, 0, sizeof *d);
}

int db_create_index(struct db *d, const char *collection, const bson_t *keys, const char *name,
		    bson_error_t *err)
{
	bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(collection), "indexes", "[", "{",
			       "key", BCON_DOCUMENT(keys), "name", BCON_UTF8(name), "}", "]");
	bool ok = mongoc_database_write_command_with_opts(d->database, cmd, NULL, NULL, err);

	bson_destroy(cmd);
	return ok ? 0 : -1;
}

/* One index a command: FerretDB 1.24 drops the connection when a createIndexes naming
 * several finds them all there. */
int db_create_indexes(struct db *d, bson_error_t *err)
{
	bson_t *by_serial = BCON_NEW("batch_id", BCON_INT32(1), "serial_no", BCON_INT32(1));
	bson_t *by_chunk = BCON_NEW("batch_id", BCON_INT32(1), "chunk", BCON_INT32(1), "serial_no", BCON_INT32(1));
	bson_t *by_rank = BCON_NEW("batch_id", BCON_INT32(1), "rank_group", BCON_INT32(1), "rank", BCON_INT32(1));
	int rc = db_create_index(d, "products", by_serial, "batch_id_1_serial_no_1", err) == 0 &&
			 db_create_index(d, "products", by_chunk, "batch_id_1_chunk_1_serial_no_1", err) == 0 &&
			 db_create_index(d, "products", by_rank, "batch_id_1_rank_group_1_rank_1", err) == 0
		 ? 0 : -1;

	bson_destroy(by_rank);
	bson_destroy(by_chunk);
	bson_destroy(by_serial);
	return rc;
}

/* libmongoc's log, less the warning it prints at exit on servers without the endSessions
 * command (FerretDB): sessions end with the connection anyway. */
static void log_handler(mongoc_log_level_t level, const char *domain, const char *message,
			void *data)
{
	if (level == MONGOC_LOG_LEVEL_WARNING && strstr(message, "\"endSessions\""))
		return;
	mongoc_log_default_handler(level, domain, message, data);
}

int db_open(struct db *d, const struct config *cfg, bson_error_t *err)
{
	return db_open_within(d, cfg, 0, err);
}

int db_open_within(struct db *d, const struct config *cfg, int32_t timeout_ms, bson_error_t *err)
{
	const char *text = config_require("MONGODB_URI", cfg->mongodb_uri);
	mongoc_uri_t *uri;
	const char *name;
	bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
	bool ok;

	memset(d, 0, sizeof *d);
	mongoc_init();
	mongoc_log_set_handler(log_handler, NULL);
	if (!(uri = mongoc_uri_new_with_error(text, err)))
		errx(EX_USAGE, "MONGODB_URI: %s", err->message);
	if (timeout_ms > 0) {
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, timeout_ms);
	}
	name = mongoc_uri_get_database(uri) ? mongoc_uri_get_database(uri) : "imgpipe";
	d->client = mongoc_client_new_from_uri_with_error(uri, err);
	if (!d->client)
		errx(EX_USAGE, "MONGODB_URI: %s", err->message);
	mongoc_client_set_error_api(d->client, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_set_appname(d->client, program_invocation_short_name);
	d->database = mongoc_client_get_database(d->client, name);
	d->batches = mongoc_database_get_collection(d->database, "batches");
	d->products = mongoc_database_get_collection(d->database, "products");
	d->sources = mongoc_database_get_collection(d->database, "sources");
	mongoc_uri_destroy(uri);

	ok = mongoc_client_command_simple(d->client, "admin", ping, NULL, NULL, err);
	bson_destroy(ping);
	if (!ok)
		db_release(d);
	return ok ? 0 : -1;
}

void db_close(struct db *d)
{
	db_release(d);
	mongoc_cleanup();
}

int64_t db_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int bad_status(const char *status, bson_error_t *err)
{
	bson_set_error(err, MONGOC_ERROR_COMMAND, MONGOC_ERROR_COMMAND_INVALID_ARG,
		       "status '%s' is not one of 'in queue', 'in progress', 'completed', 'failed'",
		       status);
	return -1;
}

int db_batch_create(struct db *d, const char *id, const char *status, const char *s3key,
		    const char *webhook_url, const char *owner, bool force, bson_error_t *err)
{
	int64_t now = db_now();
	bson_t *doc;
	bool ok;

	if (!db_status_valid(status))
		return bad_status(status, err);
	doc = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8(status), "s3Key", BCON_UTF8(s3key),
		       "createdAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now));
	if (webhook_url)
		BSON_APPEND_UTF8(doc, "webhook_url", webhook_url);
	if (owner)
		BSON_APPEND_UTF8(doc, "owner", owner);
	if (force)
		BSON_APPEND_BOOL(doc, "force", true);
	ok = mongoc_collection_insert_one(d->batches, doc, NULL, NULL, err);
	bson_destroy(doc);
	return ok ? 0 : -1;
}

int db_batch_set_status(struct db *d, const char *id, const char *status, const char *message,
			bson_error_t *err)
{
	int64_t now = db_now();
	bson_t *sel, *update, *opts;
	bool ok;

	if (!db_status_valid(status))
		return bad_status(status, err);
	sel = BCON_NEW("_id", BCON_UTF8(id));
	if (message)
		update = BCON_NEW("$set", "{", "status", BCON_UTF8(status), "message", BCON_UTF8(message),
				  "updatedAt", BCON_DATE_TIME(now), "}",
				  "$setOnInsert", "{", "createdAt", BCON_DATE_TIME(now), "}");
	else
		update = BCON_NEW("$set", "{", "status", BCON_UTF8(status),
				  "updatedAt", BCON_DATE_TIME(now), "}",
				  "$unset", "{", "message", BCON_UTF8(""), "}",
				  "$setOnInsert", "{", "createdAt", BCON_DATE_TIME(now), "}");
	opts = BCON_NEW("upsert", BCON_BOOL(true));
	ok = mongoc_collection_update_one(d->batches, sel, update, opts, NULL, err);
	bson_destroy(sel);
	bson_destroy(update);
	bson_destroy(opts);
	return ok ? 0 : -1;
}

/* Products first: a batch without products is harmless, orphaned products are not. */
int db_batch_delete(struct db *d, const char *id, bson_error_t *err)
{
	bson_t *products = BCON_NEW("batch_id", BCON_UTF8(id));
	bson_t *batch = BCON_NEW("_id", BCON_UTF8(id));
	bool ok = mongoc_collection_delete_many(d->products, products, NULL, NULL, err) &&
		  mongoc_collection_delete_one(d->batches, batch, NULL, NULL, err);

	bson_destroy(products);
	bson_destroy(batch);
	return ok ? 0 : -1;
}

/* ---- the status JSON ---- */

/* The number that value names, into *n when it is within [min, max]; else -1 with why
 * naming the parameter. */
static int page_number(const char *name, const char *value, int64_t min, int64_t max,
		       int64_t *n, char *why, size_t whylen)
{
	size_t len = strlen(value);
	/* digits only: strtoll would also take signs, spaces and "0x" */
	bool digits = len > 0 && len <= 10 && strspn(value, "0123456789") == len;

	*n = digits ? strtoll(value, NULL, 10) : -1;
	if (digits && *n >= min && *n <= max)
		return 0;
	snprintf(why, whylen, "%s must be a whole number from %lld to %lld, not '%.32s'", name,
		 (long long)min, (long long)max, value);
	return -1;
}

int db_page_parse(const char *offset, const char *limit, struct db_page *page, char *why,
		  size_t whylen)
{
	page->offset = 0;
	page->limit = DB_PAGE_LIMIT;
	if (offset && page_number("offset", offset, 0, DB_PAGE_OFFSET_MAX, &page->offset, why,
				  whylen) < 0)
		return -1;
	if (limit && page_number("limit", limit, 1, DB_PAGE_LIMIT_MAX, &page->limit, why,
				 whylen) < 0)
		return -1;
	return 0;
}

/* A date (milliseconds since 1970) as ISO-8601 UTC, as JavaScript's toISOString. */
static void append_iso(bson_t *out, const char *key, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	char buf[40];
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, 24, "%Y-%m-%dT%H:%M:%S", &tm)) {
		BSON_APPEND_NULL(out, key);
		return;
	}
	snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ".%03dZ", (int)(ms % 1000));
	BSON_APPEND_UTF8(out, key, buf);
}

static void append_iso_field(bson_t *out, const char *key, const bson_t *doc, const char *field)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME(&it))
		append_iso(out, key, bson_iter_date_time(&it));
	else
		BSON_APPEND_NULL(out, key);
}

/* Copies the array of documents at it under key, with dates as ISO-8601 strings. */
static void append_with_iso_dates(bson_t *out, const char *key, const bson_iter_t *it)
{
	bson_iter_t el, f;
	bson_t arr, doc;

	bson_append_array_begin(out, key, -1, &arr);
	if (bson_iter_recurse(it, &el))
		while (bson_iter_next(&el)) {
			bson_append_document_begin(&arr, bson_iter_key(&el), -1, &doc);
			if (BSON_ITER_HOLDS_DOCUMENT(&el) && bson_iter_recurse(&el, &f)) {
				while (bson_iter_next(&f)) {
					if (BSON_ITER_HOLDS_DATE_TIME(&f))
						append_iso(&doc, bson_iter_key(&f), bson_iter_date_time(&f));
					else
						bson_append_iter(&doc, NULL, 0, &f);
				}
			}
			bson_append_document_end(&arr, &doc);
		}
	bson_append_array_end(out, &arr);
}

/* Copies doc's field under key, or null when doc lacks it. */
static void append_copy_or_null(bson_t *out, const char *key, const bson_t *doc, const char *field)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, field))
		bson_append_value(out, key, -1, bson_iter_value(&it));
	else
		BSON_APPEND_NULL(out, key);
}

/* The length of the array (or document) at it. */
static uint32_t count_children(const bson_iter_t *it)
{
	bson_iter_t child;
	uint32_t n = 0;

	if (bson_iter_recurse(it, &child))
		while (bson_iter_next(&child))
			n++;
	return n;
}

/* A document to sort, by its bytes: a static bson_t points into itself, so qsort may not
 * move one. */
struct entry {
	int64_t key;
	const uint8_t *data;
	uint32_t len;
};

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return (x->key > y->key) - (x->key < y->key);
}

/* Copies the documents of doc's array field as the array key of out, in the order of
 * their integer field by (writers append in the order outcomes come); an empty array
 * when doc lacks the field.  Returns how many. */
static int64_t append_sorted(bson_t *out, const char *key, const bson_t *doc, const char *field,
			     const char *by)
{
	bson_iter_t it, child;
	int has = bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_ARRAY(&it);
	uint32_t cap = has ? count_children(&it) : 0;
	struct entry *e = bson_malloc0(sizeof *e * (cap + 1));
	size_t n = 0;
	bson_t arr, d;
	char idx[16];
	const char *k;

	if (has && bson_iter_recurse(&it, &child))
		while (n < cap && rec_next_doc(&child, &d)) {
			e[n] = (struct entry){ rec_int(&d, by, 0), bson_get_data(&d), d.len };
			n++;
		}
	qsort(e, n, sizeof *e, entry_cmp);
	bson_append_array_begin(out, key, -1, &arr);
	for (size_t i = 0; i < n; i++) {
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
		if (bson_init_static(&d, e[i].data, e[i].len))
			bson_append_document(&arr, k, -1, &d);
	}
	bson_append_array_end(out, &arr);
	bson_free(e);
	return (int64_t)n;
}

/* The product's image_sizes {"INDEX": {input_bytes, output_bytes}} as an array beside
 * input_image_urls: image i's sizes, or null while they are unknown. */
static void append_image_sizes(bson_t *out, const bson_t *product)
{
	bson_iter_t it, sizes, size;
	uint32_t n = bson_iter_init_find(&it, product, "input_image_urls") ? count_children(&it) : 0;
	int has = bson_iter_init_find(&sizes, product, "image_sizes") &&
		  BSON_ITER_HOLDS_DOCUMENT(&sizes);
	bson_t arr;
	char idx[16];
	const char *key;

	bson_append_array_begin(out, "image_sizes", -1, &arr);
	for (uint32_t i = 0; i < n; i++) {
		bson_uint32_to_string(i, &key, idx, sizeof idx);
		if (has && bson_iter_recurse(&sizes, &size) && bson_iter_find(&size, key) &&
		    BSON_ITER_HOLDS_DOCUMENT(&size))
			bson_append_iter(&arr, key, -1, &size);
		else
			BSON_APPEND_NULL(&arr, key);
	}
	bson_append_array_end(out, &arr);
}

/* Adds one product of the status JSON to arr. */
static void append_product(bson_t *arr, const char *key, const bson_t *product)
{
	bson_t doc;

	bson_append_document_begin(arr, key, -1, &doc);
	append_copy_or_null(&doc, "serial_no", product, "serial_no");
	append_copy_or_null(&doc, "product_name", product, "product_name");
	append_copy_or_null(&doc, "input_image_urls", product, "input_image_urls");
	append_copy_or_null(&doc, "output_image_urls", product, "output_image_urls");
	append_sorted(&doc, "errors", product, "errors", "index");
	append_image_sizes(&doc, product);
	bson_append_document_end(arr, &doc);
}

/* Appends the page of the batch's products as "offset", "limit", "products" and "next":
 * the path of the page after, or null when none follows.  Whether one follows is asked of
 * the products themselves (one more than the page), not of the counters, which lag while
 * the rows are being recorded. */
static int append_page(bson_t *out, struct db *d, const char *id, const bson_t *batch,
		       const struct db_page *page, bson_error_t *err)
{
	static const char *const fields[] = {
		"serial_no", "product_name", "input_image_urls", "output_image_urls", "errors",
		"image_sizes", NULL,
	};
	struct db_products r;
	const bson_t *doc;
	bson_t arr;
	char idx[16], *next;
	const char *key;
	uint32_t n = 0;
	bool more = false;
	int rc = 0;

	BSON_APPEND_INT64(out, "offset", page->offset);
	BSON_APPEND_INT64(out, "limit", page->limit);
	bson_append_array_begin(out, "products", -1, &arr);
	db_products_open(&r, d, id, batch, fields, page->offset);
	while (db_products_next(&r, &doc)) {
		if (n == page->limit) {
			more = true;
			break;
		}
		bson_uint32_to_string(n++, &key, idx, sizeof idx);
		append_product(&arr, key, doc);
	}
	bson_append_array_end(out, &arr);
	if (db_products_error(&r, err))
		rc = -1;
	if (more) {
		next = bson_strdup_printf("/status/%s?offset=%lld&limit=%lld", id,
					  (long long)(page->offset + page->limit),
					  (long long)page->limit);
		BSON_APPEND_UTF8(out, "next", next);
		bson_free(next);
	} else {
		BSON_APPEND_NULL(out, "next");
	}
	db_products_close(&r);
	return rc;
}

/* The batch's counter progress.NAME, as dbrecord keeps it; 0 while there is none. */
static int64_t counter(const bson_t *batch, const char *name)
{
	bson_iter_t it, v;
	char path[64];

	snprintf(path, sizeof path, "progress.%s", name);
	if (bson_iter_init(&it, batch) && bson_iter_find_descendant(&it, path, &v) &&
	    BSON_ITER_HOLDS_NUMBER(&v))
		return bson_iter_as_int64(&v);
	return 0;
}

/* progress, from the batch's counters; rows_total is the valid rows and the rejected. */
static void append_progress(bson_t *out, const bson_t *batch)
{
	static const char *const names[] = {
		"rows_done", "rows_failed", "images_total", "images_done", "images_failed",
		"images_compressed", "images_reused", "images_deduplicated", "bytes_saved", NULL,
	};
	bson_t doc;

	bson_append_document_begin(out, "progress", -1, &doc);
	BSON_APPEND_INT64(&doc, "rows_total",
			  counter(batch, "rows_done") + counter(batch, "rows_failed"));
	for (const char *const *n = names; *n; n++)
		BSON_APPEND_INT64(&doc, *n, counter(batch, *n));
	bson_append_document_end(out, &doc);
}

/* Reads the batch that filter (which it destroys) selects into *batch; 1 when there is none. */
static int find_batch_where(struct db *d, bson_t *filter, bson_t *batch, bson_error_t *err)
{
	mongoc_cursor_t *c = mongoc_collection_find_with_opts(d->batches, filter, NULL, NULL);
	const bson_t *doc;
	int rc = 1;

	if (mongoc_cursor_next(c, &doc)) {
		bson_copy_to(doc, batch);
		rc = 0;
	} else if (mongoc_cursor_error(c, err)) {
		rc = -1;
	}
	mongoc_cursor_destroy(c);
	bson_destroy(filter);
	return rc;
}

static int find_batch(struct db *d, const char *id, bson_t *batch, bson_error_t *err)
{
	return find_batch_where(d, BCON_NEW("_id", BCON_UTF8(id)), batch, err);
}

int db_batch_owned(struct db *d, const char *id, const char *owner, bson_error_t *err)
{
	bson_t batch;
	int rc = find_batch_where(d, BCON_NEW("_id", BCON_UTF8(id), "owner", BCON_UTF8(owner)),
				  &batch, err);

	if (rc == 0)
		bson_destroy(&batch);
	return rc;
}

/* The batch's fields shown as they are when present: where to announce, and what the
 * operators asked (process-batch reads them). */
static const char *const control_fields[] = {
	"webhook_url", "ending", "cancel_requested", "force", NULL,
};

int db_status(struct db *d, const char *id, const struct db_page *page, bson_t *out,
	      bson_error_t *err)
{
	bson_t batch, row_errors = BSON_INITIALIZER;
	bson_iter_t it;
	int64_t kept;
	int rc;

	if ((rc = find_batch(d, id, &batch, err)) != 0)
		return rc;
	BSON_APPEND_UTF8(out, "batch_id", id);
	append_copy_or_null(out, "status", &batch, "status");
	append_copy_or_null(out, "message", &batch, "message");
	append_copy_or_null(out, "s3Key", &batch, "s3Key");
	append_iso_field(out, "created_at", &batch, "createdAt");
	append_iso_field(out, "updated_at", &batch, "updatedAt");
	append_progress(out, &batch);
	BSON_APPEND_INT64(out, "products_total", counter(&batch, "rows_done"));
	if (page)
		rc = append_page(out, d, id, &batch, page, err);
	/* dbrecord keeps the first IMGPIPE_MAX_ROW_ERRORS; rows_failed counts them all */
	kept = append_sorted(&row_errors, "row_errors", &batch, "row_errors", "line");
	bson_concat(out, &row_errors);
	BSON_APPEND_INT64(out, "row_errors_dropped",
			  counter(&batch, "rows_failed") > kept ? counter(&batch, "rows_failed") - kept : 0);
	for (const char *const *f = control_fields; *f; f++)
		if (bson_iter_init_find(&it, &batch, *f))
			bson_append_iter(out, NULL, 0, &it);
	if (bson_iter_init_find(&it, &batch, "webhook_deliveries"))
		append_with_iso_dates(out, "webhook_deliveries", &it);
	bson_destroy(&batch);
	bson_destroy(&row_errors);
	return rc;
}

/* ---- the output CSV ---- */

/* Writes one quoted CSV field.  A cell that a spreadsheet would run as a formula gets a
 * leading ' (OWASP's advice for CSV injection), so "=HYPERLINK(...)" shows as text. */
static int write_cell(FILE *out, const char *s, size_t len)
{
	char *guarded;
	int rc;

	if (len == 0 || !strchr("=+-@\t\r", s[0]))
		return csv_fwrite(out, s, len);
	guarded = bson_strdup_printf("'%.*s", (int)len, s);
	rc = csv_fwrite(out, guarded, len + 1);
	bson_free(guarded);
	return rc;
}

/* Writes the strings of the product's array field comma-joined as one quoted CSV field. */
static int write_url_field(FILE *out, const bson_t *product, const char *field)
{
	bson_string_t *s = bson_string_new(NULL);
	bson_iter_t it, url;
	int first = 1, rc;

	if (bson_iter_init_find(&it, product, field) && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &url))
		while (bson_iter_next(&url)) {
			if (!first)
				bson_string_append_c(s, ',');
			if (BSON_ITER_HOLDS_UTF8(&url))
				bson_string_append(s, bson_iter_utf8(&url, NULL));
			first = 0;
		}
	rc = write_cell(out, s->str, s->len);
	bson_string_free(s, true);
	return rc;
}

static int write_csv_row(FILE *out, const bson_t *product)
{
	const char *name = rec_str(product, "product_name");

	if (!name)
		name = "";
	if (fprintf(out, "%lld,", (long long)rec_int(product, "serial_no", 0)) < 0 ||
	    write_cell(out, name, strlen(name)) != 0 || putc(',', out) == EOF ||
	    write_url_field(out, product, "input_image_urls") != 0 || putc(',', out) == EOF ||
	    write_url_field(out, product, "output_image_urls") != 0 || putc('\n', out) == EOF)
		return -1;
	return 0;
}

int db_status_csv(struct db *d, const char *id, FILE *out, void (*begin)(void *), void *arg,
		  bson_error_t *err)
{
	static const char *const fields[] = {
		"serial_no", "product_name", "input_image_urls", "output_image_urls", NULL,
	};
	struct db_products r;
	const bson_t *doc;
	bson_t batch;
	bool more;
	int rc;

	if ((rc = find_batch(d, id, &batch, err)) != 0)
		return rc;
	db_products_open(&r, d, id, &batch, fields, 0);
	bson_destroy(&batch);
	/* the first products before the first byte, so that an unreachable MongoDB is still an
	 * error of its own rather than a CSV cut short */
	more = db_products_next(&r, &doc);
	if (!more && db_products_error(&r, err)) {
		db_products_close(&r);
		return -1;
	}
	if (begin)
		begin(arg);
	if (fputs("S. No.,Product Name,Input Image Urls,Output Image Urls\n", out) == EOF)
		rc = -1;
	for (; rc == 0 && more; more = db_products_next(&r, &doc))
		rc = write_csv_row(out, doc);
	if (rc != 0)
		bson_set_error(err, 0, 0, "cannot write the CSV of batch %s", id);
	else if (db_products_error(&r, err))
		rc = -1;
	db_products_close(&r);
	return rc;
}

/* ---- what operators ask of a batch ---- */

/* Applies update to batch id if its status also matches state, in one findAndModify, and
 * copies the batch as it was before into *before (when not NULL; destroy it after).
 * Returns 0 when it did, 1 when there is no such batch, 2 when it is in another state. */
static int modify_if(struct db *d, const char *id, bson_t *state, bson_t *update,
		     bson_t *before, bson_error_t *err)
{
	bson_t *query = BCON_NEW("_id", BCON_UTF8(id)), reply, found;
	mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;
	int rc;

	bson_concat(query, state);
	mongoc_find_and_modify_opts_set_update(opts, update);
	if (!mongoc_collection_find_and_modify_with_opts(d->batches, query, opts, &reply, err)) {
		rc = -1;
	} else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		if (before) {
			bson_iter_document(&it, &len, &data);
			bson_init_static(&found, data, len);
			bson_copy_to(&found, before);
		}
		rc = 0;
	} else if ((rc = find_batch(d, id, &found, err)) == 0) {
		bson_destroy(&found);
		rc = 2;
	}
	bson_destroy(&reply);
	mongoc_find_and_modify_opts_destroy(opts);
	bson_destroy(query);
	bson_destroy(state);
	bson_destroy(update);
	return rc;
}

int db_batch_retry(struct db *d, const char *id, bson_t *before, bson_error_t *err)
{
	return modify_if(d, id, BCON_NEW("status", "{", "$in", "[", BCON_UTF8("completed"),
					 BCON_UTF8("failed"), "]", "}"),
			 BCON_NEW("$set", "{", "status", BCON_UTF8("in queue"),
				  "message", BCON_UTF8("queued again: its failed images are tried again"),
				  "updatedAt", BCON_DATE_TIME(db_now()), "}",
				  "$inc", "{", "ending", BCON_INT32(1), "}",
				  "$unset", "{", "cancel_requested", BCON_UTF8(""), "}"),
			 before, err);
}

/* What a retry changes, besides updatedAt. */
static const char *const retry_changes[] = { "status", "message", "ending", "cancel_requested", NULL };

int db_batch_unretry(struct db *d, const char *id, const bson_t *before, bson_error_t *err)
{
	bson_t *set = BCON_NEW("updatedAt", BCON_DATE_TIME(db_now())), *unset = bson_new();
	bson_t *update = bson_new();
	bson_iter_t it;
	int rc;

	for (const char *const *f = retry_changes; *f; f++)
		if (bson_iter_init_find(&it, before, *f))
			bson_append_iter(set, NULL, 0, &it);
		else
			BSON_APPEND_UTF8(unset, *f, "");
	BSON_APPEND_DOCUMENT(update, "$set", set);
	if (!bson_empty(unset))
		BSON_APPEND_DOCUMENT(update, "$unset", unset);
	rc = modify_if(d, id, BCON_NEW("status", BCON_UTF8("in queue")), update, NULL, err);
	bson_destroy(set);
	bson_destroy(unset);
	return rc;
}

int db_batch_cancel(struct db *d, const char *id, int *ended, bson_error_t *err)
{
	int64_t now = db_now();
	int rc = modify_if(d, id, BCON_NEW("status", BCON_UTF8("in queue")),
			   BCON_NEW("$set", "{", "status", BCON_UTF8("failed"),
				    "message", BCON_UTF8("cancelled"), "cancel_requested", BCON_BOOL(true),
				    "updatedAt", BCON_DATE_TIME(now), "}"),
			   NULL, err);

	*ended = rc == 0;
	if (rc != 2)
		return rc;
	return modify_if(d, id, BCON_NEW("status", BCON_UTF8("in progress")),
			 BCON_NEW("$set", "{", "cancel_requested", BCON_BOOL(true),
				  "updatedAt", BCON_DATE_TIME(now), "}"),
			 NULL, err);
}

int db_batch_counts(struct db *d, int64_t counts[], bson_error_t *err)
{
	bson_t *pipeline = BCON_NEW("pipeline", "[", "{", "$group", "{", "_id", BCON_UTF8("$status"),
				    "n", "{", "$sum", BCON_INT32(1), "}", "}", "}", "]");
	mongoc_cursor_t *c = mongoc_collection_aggregate(d->batches, MONGOC_QUERY_NONE, pipeline,
							 NULL, NULL);
	const bson_t *doc;
	int rc = 0;

	for (size_t i = 0; db_statuses[i]; i++)
		counts[i] = 0;
	while (mongoc_cursor_next(c, &doc))
		for (size_t i = 0; db_statuses[i]; i++)
			if (rec_str(doc, "_id") && strcmp(rec_str(doc, "_id"), db_statuses[i]) == 0)
				counts[i] = rec_int(doc, "n", 0);
	if (mongoc_cursor_error(c, err))
		rc = -1;
	mongoc_cursor_destroy(c);
	bson_destroy(pipeline);
	return rc;
}
