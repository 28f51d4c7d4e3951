/* dbrecord's read commands: show prints a batch's status or output CSV, pending lists
 * the images it has still to do (with what sources knows of each URL), recount counts its
 * products and images again. */
#include <string.h>

#include "dbrecord.h"

#define PENDING_PAGE 100           /* products whose URLs one query of sources looks up */

/* The one batch ID that a command wants after its options (read already). */
static const char *command_id(int argc, char **argv, const char *command,
			      const char *usage)
{
	if (argc - optind != 1)
		cli_usage_error(usage, "%s wants one batch ID", command);
	return argv[optind];
}

/* The batch ID of a command that takes no options. */
static const char *only_id(int argc, char **argv, const char *command, const char *usage)
{
	static const struct option none[] = { { NULL, 0, NULL, 0 } };

	optind = 0;
	while (cli_getopt(argc, argv, "", none, usage) != -1)
		;
	return command_id(argc, argv, command, usage);
}

static void csv_begun(void *written)
{
	*(bool *)written = true;
}

/* show ID [--offset N] [--limit M] [--no-products] [--csv] */
void show_command(int argc, char **argv, const char *usage)
{
	enum { OPT_CSV = 256, OPT_OFFSET, OPT_LIMIT, OPT_NO_PRODUCTS };
	static const struct option longopts[] = {
		{ "csv", no_argument, NULL, OPT_CSV },
		{ "offset", required_argument, NULL, OPT_OFFSET },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "no-products", no_argument, NULL, OPT_NO_PRODUCTS },
		{ NULL, 0, NULL, 0 },
	};
	struct retry r = { 0 };
	bson_t status = BSON_INITIALIZER;
	bson_error_t error;
	struct db_page page;
	const char *id, *offset = NULL, *limit = NULL;
	char why[128];
	bool csv = false, products = true, written = false;
	int c, rc;

	optind = 0;     /* glibc starts afresh: show's options may come before or after ID */
	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (c) {
		case OPT_CSV:
			csv = true;
			break;
		case OPT_OFFSET:
			offset = optarg;
			break;
		case OPT_LIMIT:
			limit = optarg;
			break;
		case OPT_NO_PRODUCTS:
			products = false;
			break;
		}
	}
	id = command_id(argc, argv, "show", usage);
	if (db_page_parse(offset, limit, &page, why, sizeof why) < 0)
		cli_usage_error(usage, "%s", why);
	if (csv && (offset || limit || !products))
		cli_usage_error(usage, "--csv prints every product: no --offset, --limit or --no-products");
	if (!products && (offset || limit))
		cli_usage_error(usage, "--no-products shows no page: no --offset or --limit");
	connect_db();
	while ((rc = csv ? db_status_csv(&db, id, stdout, csv_begun, &written, &error)
			 : db_status(&db, id, products ? &page : NULL, &status, &error)) < 0) {
		retry_read(&r, written, &error);
		bson_reinit(&status);
	}
	if (rc == 1)
		errx(EX_DATAERR, "no batch %s", id);
	if (!csv && ndjson_write(stdout, &status) < 0)
		err(EX_IOERR, "stdout");
	bson_destroy(&status);
}

/* What pending joins to its records: the settings the pipeline makes outputs with, as
 * the path of their output in a source ("outputs.q50"), and the sources of a page of
 * products, {URL: source}; NULL when nothing is to be reused (a forced batch). */
struct reuse_from {
	const char *settings;
	char path[96];
	bson_t *sources;
};

/* The record's "reuse", from what sources holds of its URL: the validators, hash and size
 * of the source last seen there, and the output made of it under the settings; nothing
 * when there is none. */
static void append_reuse(bson_t *rec, const char *url, const struct reuse_from *from)
{
	static const char *const source_fields[] = {
		"etag", "last_modified", "sha256", "input_bytes", NULL,
	};
	static const char *const output_fields[] = {
		"output_url", "output_key", "output_bytes", "format", "kept", NULL,
	};
	bson_iter_t it, found;
	bson_t source, output, reuse;
	uint32_t len;
	const uint8_t *data;

	if (!from->sources || !bson_iter_init_find(&it, from->sources, url) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&it))
		return;
	bson_iter_document(&it, &len, &data);
	if (!bson_init_static(&source, data, len) || !rec_str(&source, "sha256") ||
	    !bson_iter_init(&it, &source) || !bson_iter_find_descendant(&it, from->path, &found) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&found))
		return;
	bson_iter_document(&found, &len, &data);
	if (!bson_init_static(&output, data, len) || !rec_str(&output, "output_url") ||
	    !rec_str(&output, "output_key"))
		return;
	bson_append_document_begin(rec, "reuse", -1, &reuse);
	for (const char *const *f = source_fields; *f; f++)
		if (bson_iter_init_find(&it, &source, *f))
			bson_append_iter(&reuse, *f, -1, &it);
	BSON_APPEND_UTF8(&reuse, "settings", from->settings);
	for (const char *const *f = output_fields; *f; f++)
		if (bson_iter_init_find(&it, &output, *f))
			bson_append_iter(&reuse, *f, -1, &it);
	bson_append_document_end(rec, &reuse);
}

/* The record's "recorded": what the product held for the slot when it was listed (its
 * number of input URLs and the slot's entries in errors), so that dbrecord, recording
 * the slot's outcome, needs no query of its own. */
static void append_recorded(bson_t *rec, const bson_t *product, int32_t index)
{
	bson_t errors = BSON_INITIALIZER, recorded, *entries;
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;

	if (bson_iter_init_find(&it, product, "errors") && BSON_ITER_HOLDS_ARRAY(&it)) {
		bson_iter_array(&it, &len, &data);
		if (!bson_init_static(&errors, data, len))
			bson_init(&errors);
	}
	entries = select_entries(&errors, index, false);
	bson_append_document_begin(rec, "recorded", -1, &recorded);
	BSON_APPEND_INT32(&recorded, "input_urls", string_array(product, "input_image_urls"));
	BSON_APPEND_ARRAY(&recorded, "errors", entries);
	bson_append_document_end(rec, &recorded);
	bson_destroy(entries);
	bson_destroy(&errors);
}

/* The slots of a product that hold no output yet and are no copy (dbrecord copies fills
 * those), one at a time (pending_next). */
struct pending_slots {
	const bson_t *product;
	bson_iter_t url, out;      /* out moves along with url: slot i belongs to input i */
	bool has_out, has_url;
	int32_t index;             /* of the slot pending_next returned last */
};

static void pending_begin(struct pending_slots *s, const bson_t *product)
{
	bson_iter_t it;

	s->has_url = bson_iter_init_find(&it, product, "input_image_urls") &&
		     BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &s->url);
	s->has_out = bson_iter_init_find(&it, product, "output_image_urls") &&
		     BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &s->out);
	s->index = -1;
	s->product = product;
}

/* The input URL of the next slot without output, its index in s->index; NULL after the
 * last. */
static const char *pending_next(struct pending_slots *s)
{
	while (s->has_url && bson_iter_next(&s->url)) {
		bool done = s->has_out && bson_iter_next(&s->out) && BSON_ITER_HOLDS_UTF8(&s->out) &&
			    *bson_iter_utf8(&s->out, NULL);

		s->index++;
		if (!done && BSON_ITER_HOLDS_UTF8(&s->url) && !is_copy(s->product, s->index))
			return bson_iter_utf8(&s->url, NULL);
	}
	return NULL;
}

/* Writes an image record for each of the product's slots that hold no output yet (and
 * are no copy), with its reuse when its source is known, and a blank line after them
 * (process-batch's parallel splits only there, so that one pipeline writes all of a
 * product's slots).  Returns how many, or -1 when stdout fails. */
static int write_pending(const char *id, const bson_t *product, const struct reuse_from *from)
{
	struct pending_slots slots;
	bson_iter_t serial;
	const char *url;
	int n = 0;

	if (!bson_iter_init_find(&serial, product, "serial_no"))
		return 0;
	pending_begin(&slots, product);
	while ((url = pending_next(&slots))) {
		bson_t rec = BSON_INITIALIZER;
		int rc;

		BSON_APPEND_UTF8(&rec, "batch_id", id);
		bson_append_iter(&rec, "serial_no", -1, &serial);
		BSON_APPEND_INT32(&rec, "index", slots.index);
		BSON_APPEND_UTF8(&rec, "url", url);
		append_reuse(&rec, url, from);
		append_recorded(&rec, product, slots.index);
		rc = ndjson_write(stdout, &rec);
		bson_destroy(&rec);
		if (rc < 0)
			return -1;
		n++;
	}
	return n > 0 && putchar('\n') == EOF ? -1 : n;
}

/* Reads what sources holds of url into from->sources as {URL: source}.  One _id equality
 * a query: FerretDB 1.24 pushes only equalities down to its store, so an $in of a page's
 * URLs read every source ever recorded (with 20,300 sources, a 300-product chunk's
 * pending records cost FerretDB 12-15 CPU s that way, under 1 this way). */
static bool read_source(const char *url, const bson_t *opts, struct reuse_from *from,
			bson_error_t *err)
{
	bson_t *filter = BCON_NEW("_id", BCON_UTF8(url));
	mongoc_cursor_t *c = mongoc_collection_find_with_opts(db.sources, filter, opts, NULL);
	const bson_t *source;
	bool ok;

	if (mongoc_cursor_next(c, &source))
		BSON_APPEND_DOCUMENT(from->sources, url, source);
	ok = !mongoc_cursor_error(c, err);
	mongoc_cursor_destroy(c);
	bson_destroy(filter);
	return ok;
}

/* Reads what sources holds of the page's pending URLs into from->sources; false with err
 * when MongoDB fails. */
static bool read_sources(bson_t *const *page, size_t n, struct reuse_from *from, bson_error_t *err)
{
	bson_t *opts = BCON_NEW("projection", "{", "etag", BCON_INT32(1), "last_modified", BCON_INT32(1),
				"sha256", BCON_INT32(1), "input_bytes", BCON_INT32(1),
				from->path, BCON_INT32(1), "}", "limit", BCON_INT64(1));
	struct pending_slots slots;
	const char *url;
	bool ok = true;

	bson_reinit(from->sources);
	for (size_t i = 0; ok && i < n; i++) {
		pending_begin(&slots, page[i]);
		while (ok && (url = pending_next(&slots)))
			ok = read_source(url, opts, from, err);
	}
	bson_destroy(opts);
	return ok;
}

/* Writes the pending records of a page of products, after reading their sources (unless
 * nothing is to be reused), and empties the page. */
static bool write_page(const char *id, bson_t **page, size_t *n, struct reuse_from *from,
		       bool *written, bson_error_t *error)
{
	int count;

	if (from->sources && !read_sources(page, *n, from, error))
		return false;
	for (size_t i = 0; i < *n; i++) {
		if ((count = write_pending(id, page[i], from)) < 0)
			err(EX_IOERR, "stdout");
		*written = *written || count > 0;
		bson_destroy(page[i]);
	}
	*n = 0;
	return true;
}

/* Streams the batch's pending image records from a cursor over its products, a page of
 * them at a time; false with error when MongoDB fails, with *written telling whether some
 * were written already. */
static bool list_pending(const char *id, int64_t chunk, struct reuse_from *from, bool *written,
			 bson_error_t *error)
{
	static const char *const fields[] = {
		"serial_no", "input_image_urls", "output_image_urls", "copies", "errors", NULL,
	};
	mongoc_cursor_t *c = db_products_find(&db, id, chunk, fields, true, 0);
	const bson_t *product;
	bson_t *page[PENDING_PAGE];
	size_t n = 0;
	bool ok = true;

	while (ok && mongoc_cursor_next(c, &product)) {
		page[n++] = bson_copy(product);
		if (n == PENDING_PAGE)
			ok = write_page(id, page, &n, from, written, error);
	}
	ok = ok && !mongoc_cursor_error(c, error) && write_page(id, page, &n, from, written, error);
	for (size_t i = 0; i < n; i++)
		bson_destroy(page[i]);
	mongoc_cursor_destroy(c);
	return ok;
}

/* Whether the batch asks for every image to be made afresh (force: true); false with err
 * when MongoDB fails.  No such batch forces nothing: it has no products either. */
static bool batch_forced(const char *id, bool *forced, bson_error_t *err)
{
	bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
	bson_t *opts = BCON_NEW("projection", "{", "force", BCON_INT32(1), "}", "limit", BCON_INT64(1));
	mongoc_cursor_t *c = mongoc_collection_find_with_opts(db.batches, filter, opts, NULL);
	const bson_t *batch;
	bson_iter_t it;
	bool ok;

	*forced = mongoc_cursor_next(c, &batch) && bson_iter_init_find(&it, batch, "force") &&
		  BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
	ok = !mongoc_cursor_error(c, err);
	mongoc_cursor_destroy(c);
	bson_destroy(opts);
	bson_destroy(filter);
	return ok;
}

/* pending ID [--chunk N] [--settings NAME]: process-batch's work list, every input URL
 * (of chunk N) whose output slot is "" (failed images included) and that is no copy, as
 * image records grouped by product, in serial order; each with a reuse when sources knows its URL and an output
 * made under NAME (default q50, shrink's), unless the batch or IMGPIPE_FORCE=1 forces. */
void pending_command(int argc, char **argv, const char *usage)
{
	enum { OPT_CHUNK = 256, OPT_SETTINGS };
	static const struct option longopts[] = {
		{ "chunk", required_argument, NULL, OPT_CHUNK },
		{ "settings", required_argument, NULL, OPT_SETTINGS },
		{ NULL, 0, NULL, 0 },
	};
	struct reuse_from from = { .settings = "q50" };
	struct retry r = { 0 };
	bson_error_t error;
	const char *id;
	long chunk = -1;
	bool written = false, forced = false;
	int c;

	optind = 0;     /* glibc starts afresh: the options may come before or after ID */
	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		if (c == OPT_CHUNK)
			chunk = cli_long("--chunk", optarg, 0, INT32_MAX);
		else if (c == OPT_SETTINGS)
			from.settings = optarg;
	}
	id = command_id(argc, argv, "pending", usage);
	if (source_output_path(from.settings, from.path, sizeof from.path) < 0)
		cli_usage_error(usage, "--settings wants a name of up to 80 characters, as shrink's");
	connect_db();
	while (!cfg.force && !batch_forced(id, &forced, &error))
		retry_or_exit(&r, &error, NULL);
	from.sources = cfg.force || forced ? NULL : bson_new();
	while (!list_pending(id, chunk, &from, &written, &error))
		retry_read(&r, written, &error);
	bson_destroy(from.sources);
}

/* The number of elements of the array at it; 0 when it holds something else. */
static int64_t array_length(const bson_iter_t *it)
{
	bson_iter_t el;
	int64_t n = 0;

	if (BSON_ITER_HOLDS_ARRAY(it) && bson_iter_recurse(it, &el))
		while (bson_iter_next(&el))
			n++;
	return n;
}

/* How the done images were made and what they saved, from image_sizes (the others done
 * were compressed: an image record without sizes keeps none). */
struct made {
	int64_t reused, copied, saved;
};

/* Adds the product's image_sizes entries to m: the reused and the copied, and each one's
 * input_bytes - output_bytes. */
static void count_made(const bson_t *product, struct made *m)
{
	bson_iter_t it, entry;
	bson_t sizes;

	if (!bson_iter_init_find(&it, product, "image_sizes") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &entry))
		return;
	while (rec_next_doc(&entry, &sizes)) {
		const char *how = rec_str(&sizes, "how");

		m->reused += how && strcmp(how, "reused") == 0;
		m->copied += how && strcmp(how, "copied") == 0;
		m->saved += rec_int(&sizes, "input_bytes", 0) - rec_int(&sizes, "output_bytes", 0);
	}
}

/* Counts the batch's products and images from a cursor over them, into the $set of set
 * (rows_failed aside: only the rows know it); false with err when MongoDB fails. */
static bool count_products(const char *id, bson_t *set, bson_error_t *err)
{
	static const char *const fields[] = {
		"input_image_urls", "output_image_urls", "errors", "image_sizes", NULL,
	};
	mongoc_cursor_t *c = db_products_find(&db, id, -1, fields, false, 0);
	const bson_t *product;
	int64_t rows = 0, images = 0, done = 0, failed = 0;
	struct made made = { 0 };
	bson_iter_t it, slot;
	bool ok;

	while (mongoc_cursor_next(c, &product)) {
		rows++;
		images += string_array(product, "input_image_urls");
		if (bson_iter_init_find(&it, product, "output_image_urls") &&
		    BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &slot))
			while (bson_iter_next(&slot))
				done += BSON_ITER_HOLDS_UTF8(&slot) && *bson_iter_utf8(&slot, NULL);
		if (bson_iter_init_find(&it, product, "errors"))
			failed += array_length(&it);
		count_made(product, &made);
	}
	ok = !mongoc_cursor_error(c, err);
	mongoc_cursor_destroy(c);
	BCON_APPEND(set, "$set", "{", "progress.rows_done", BCON_INT64(rows),
		    "progress.images_total", BCON_INT64(images), "progress.images_done",
		    BCON_INT64(done), "progress.images_failed", BCON_INT64(failed),
		    "progress.images_compressed", BCON_INT64(done - made.reused - made.copied),
		    "progress.images_reused", BCON_INT64(made.reused),
		    "progress.images_deduplicated", BCON_INT64(made.copied),
		    "progress.bytes_saved", BCON_INT64(made.saved),
		    "updatedAt", BCON_DATE_TIME(db_now()), "}");
	return ok;
}

/* Counts the batch's products and images and stores the counts; *found tells whether
 * there is such a batch.  False with err when MongoDB fails. */
static bool store_counts(const char *id, bool *found, bson_error_t *err)
{
	bson_t *sel = BCON_NEW("_id", BCON_UTF8(id)), update = BSON_INITIALIZER, reply;
	bool ok = count_products(id, &update, err);

	if (ok) {
		ok = mongoc_collection_update_one(db.batches, sel, &update, NULL, &reply, err);
		*found = rec_int(&reply, "matchedCount", 0) > 0;
		bson_destroy(&reply);
	}
	bson_destroy(&update);
	bson_destroy(sel);
	return ok;
}

/* recount ID: sets the batch's counters from its products, counted as docs/design.md
 * says.  O(batch), so once at the batch's end, after its last image: the $inc of a flush
 * cut off between its products and its batch is then no longer missing. */
void recount_command(int argc, char **argv, const char *usage)
{
	const char *id = only_id(argc, argv, "recount", usage);
	struct retry r = { 0 };
	bson_error_t error;
	bool found = false;

	connect_db();
	while (!store_counts(id, &found, &error))
		retry_or_exit(&r, &error, NULL);
	if (!found)
		errx(EX_DATAERR, "no batch %s", id);
}
