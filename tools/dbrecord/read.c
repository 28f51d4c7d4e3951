/* dbrecord's read commands: show prints a batch's status or output CSV, pending lists
 * the images it has still to do, recount counts its products and images again. */
#include "dbrecord.h"

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

/* Writes an image record for each of the product's slots that hold no output yet and are
 * no copy, and a blank line after them (process-batch's parallel splits only there, so
 * that one pipeline writes all of a product's slots).  Returns how many, or -1 when
 * stdout fails. */
static int write_pending(const char *id, const bson_t *product)
{
	bson_iter_t urls, url, outs, out, serial;
	bool has_out;
	int n = 0;

	if (!bson_iter_init_find(&serial, product, "serial_no") ||
	    !bson_iter_init_find(&urls, product, "input_image_urls") ||
	    !BSON_ITER_HOLDS_ARRAY(&urls) || !bson_iter_recurse(&urls, &url))
		return 0;
	has_out = bson_iter_init_find(&outs, product, "output_image_urls") &&
		  BSON_ITER_HOLDS_ARRAY(&outs) && bson_iter_recurse(&outs, &out);
	for (int32_t i = 0; bson_iter_next(&url); i++) {
		/* out moves along with url: slot i belongs to input i */
		bool done = has_out && bson_iter_next(&out) && BSON_ITER_HOLDS_UTF8(&out) &&
			    *bson_iter_utf8(&out, NULL);
		bson_t rec = BSON_INITIALIZER;
		int rc;

		if (done || !BSON_ITER_HOLDS_UTF8(&url) || is_copy(product, i))
			continue;
		BSON_APPEND_UTF8(&rec, "batch_id", id);
		bson_append_iter(&rec, "serial_no", -1, &serial);
		BSON_APPEND_INT32(&rec, "index", i);
		BSON_APPEND_UTF8(&rec, "url", bson_iter_utf8(&url, NULL));
		rc = ndjson_write(stdout, &rec);
		bson_destroy(&rec);
		if (rc < 0)
			return -1;
		n++;
	}
	return n > 0 && putchar('\n') == EOF ? -1 : n;
}

/* Streams the batch's pending image records from a cursor over its products; false with
 * error when MongoDB fails, with *written telling whether some were written already. */
static bool list_pending(const char *id, int64_t chunk, bool *written, bson_error_t *error)
{
	static const char *const fields[] = {
		"serial_no", "input_image_urls", "output_image_urls", "copies", NULL,
	};
	mongoc_cursor_t *c = db_products_find(&db, id, chunk, fields, 0, 0);
	const bson_t *product;
	int n;
	bool ok;

	while (mongoc_cursor_next(c, &product)) {
		if ((n = write_pending(id, product)) < 0)
			err(EX_IOERR, "stdout");
		*written = *written || n > 0;
	}
	ok = !mongoc_cursor_error(c, error);
	mongoc_cursor_destroy(c);
	return ok;
}

/* pending ID [--chunk N]: process-batch's work list, every input URL (of chunk N) whose
 * output slot is "" (failed images included) and that is no copy, as image records
 * grouped by product, in serial order. */
void pending_command(int argc, char **argv, const char *usage)
{
	enum { OPT_CHUNK = 256 };
	static const struct option longopts[] = {
		{ "chunk", required_argument, NULL, OPT_CHUNK },
		{ NULL, 0, NULL, 0 },
	};
	struct retry r = { 0 };
	bson_error_t error;
	const char *id;
	long chunk = -1;
	bool written = false;

	optind = 0;     /* glibc starts afresh: the options may come before or after ID */
	while (cli_getopt(argc, argv, "", longopts, usage) == OPT_CHUNK)
		chunk = cli_long("--chunk", optarg, 0, INT32_MAX);
	id = command_id(argc, argv, "pending", usage);
	connect_db();
	while (!list_pending(id, chunk, &written, &error))
		retry_read(&r, written, &error);
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

/* Counts the batch's products and images from a cursor over them, into the $set of set
 * (rows_failed aside: only the rows know it); false with err when MongoDB fails. */
static bool count_products(const char *id, bson_t *set, bson_error_t *err)
{
	static const char *const fields[] = {
		"input_image_urls", "output_image_urls", "errors", NULL,
	};
	mongoc_cursor_t *c = db_products_find(&db, id, -1, fields, 0, 0);
	const bson_t *product;
	int64_t rows = 0, images = 0, done = 0, failed = 0;
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
	}
	ok = !mongoc_cursor_error(c, err);
	mongoc_cursor_destroy(c);
	BCON_APPEND(set, "$set", "{", "progress.rows_done", BCON_INT64(rows),
		    "progress.images_total", BCON_INT64(images), "progress.images_done",
		    BCON_INT64(done), "progress.images_failed", BCON_INT64(failed),
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
