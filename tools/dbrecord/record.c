/* dbrecord's record mode: reads NDJSON records, records the products, image outcomes, row
 * errors and webhook deliveries among them in MongoDB in write batches, and echoes each
 * record once recorded.
 *
 * Every write is a single-document update that gives the same result when repeated, so
 * a rerun, a retry after a lost connection and a second writer on the same batch all
 * leave the same documents.  The batch's progress counters are the exception: images
 * move them by $inc as their slots change state, which a write lost between a product
 * and its batch leaves short, so process-batch recounts them once at the batch's end.
 * An image done also records its source in sources (by URL: its validators, hash, and the
 * output made of it under each settings), for a later batch to reuse. */
#include <poll.h>
#include <string.h>

#include "dbrecord.h"
#include "stage.h"

#define FLUSH_MAX 256              /* records a write batch */
#define FLUSH_WAIT_MS 250          /* how long a write batch waits for more records */

enum kind { PASS, PRODUCT, IMAGE, ROW_ERROR, DELIVERY };

struct item {
	bson_t *rec;
	char *line;                /* the input line, echoed as it came while rec is unchanged */
	enum kind kind;
	char *id;                  /* products and images: the product's _id */
	int64_t urls;              /* its number of input URLs; -1 while unknown */
	bson_t *stale;             /* images: the entries the product's errors hold for the
	                            * image before this record (an array); NULL until known */
	bool was_done;             /* images: the slot held an output URL before this record
	                            * (known with stale) */
	int add_row_error;         /* row errors: 1 to add to the batch's row_errors, 0 not
	                            * (there already, or the list is full); -1 until known */
};

static bool all_rows;          /* --all-rows: the input holds every row of its batch */

/* Record mode writes products: their index is made first, once a process. */
static void prepare_products(void)
{
	struct retry r = { 0 };
	bson_error_t error;

	while (db_create_indexes(&db, &error) < 0)
		retry_or_exit(&r, &error, NULL);
}

/* ---- records ---- */

/* The number of strings in the array key of rec; 0 when it is missing or holds other
 * things. */
int string_array(const bson_t *rec, const char *key)
{
	bson_iter_t it, el;
	int n = 0;

	if (!bson_iter_init_find(&it, rec, key) || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &el))
		return 0;
	while (bson_iter_next(&el)) {
		if (!BSON_ITER_HOLDS_UTF8(&el))
			return 0;
		n++;
	}
	return n;
}

/* What the record asks to record, from its fields; PASS with the reason otherwise. */
static enum kind classify(const bson_t *rec, const char **why)
{
	const char *batch = rec_str(rec, "batch_id");
	int64_t serial = rec_int(rec, "serial_no", 0);

	*why = "it is not a product, image, row error or webhook delivery record";
	if (!batch || !*batch) {
		*why = "it has no batch_id";
		return PASS;
	}
	if (bson_has_field(rec, "delivery"))
		return DELIVERY;
	if (bson_has_field(rec, "index")) {
		int64_t index = rec_int(rec, "index", -1);
		if (serial <= 0 || index < 0 || index > INT32_MAX || !rec_str(rec, "url") ||
		    !(rec_str(rec, "error") || rec_str(rec, "output_url"))) {
			*why = "an image record needs serial_no, index, url and output_url or error";
			return PASS;
		}
		return IMAGE;
	}
	if (bson_has_field(rec, "product_name") && !rec_has_error(rec)) {
		if (serial <= 0 || !rec_str(rec, "product_name") ||
		    !string_array(rec, "input_image_urls")) {
			*why = "a product record needs serial_no, product_name and input_image_urls";
			return PASS;
		}
		if (bson_has_field(rec, "rank") && rec_int(rec, "rank", -1) < 0) {
			*why = "a product record's rank is a whole number from 0";
			return PASS;
		}
		return PRODUCT;
	}
	if (!bson_has_field(rec, "serial_no") && rec_str(rec, "error") &&
	    rec_int(rec, "line", 0) > 0)
		return ROW_ERROR;
	return PASS;
}

/* An item for the record read last; one that cannot be recorded is warned about and
 * passes through, with an error added unless it carries one already. */
static struct item item_new(bson_t *rec, const struct stage *s)
{
	const char *why;
	struct item it = { .rec = rec, .kind = classify(rec, &why), .urls = -1, .add_row_error = -1 };

	if (it.kind == PASS) {
		warnx("input line %lu not recorded: %s", s->in.lineno, why);
		if (!rec_has_error(rec)) {
			it.rec = rec_error(rec, "not recorded: %s", why);
			bson_destroy(rec);
		}
	} else if (it.kind == PRODUCT || it.kind == IMAGE) {
		/* batch id and serial number, so that a rerun finds the same product */
		it.id = bson_strdup_printf("%s-%lld", rec_str(rec, "batch_id"),
					   (long long)rec_int(rec, "serial_no", 0));
		if (it.kind == PRODUCT)
			it.urls = string_array(rec, "input_image_urls");
	}
	if (it.rec == rec)
		it.line = bson_strdup(stage_line(s));
	return it;
}

static void item_free(struct item *it)
{
	bson_destroy(it->rec);
	bson_free(it->line);
	bson_free(it->id);
	bson_destroy(it->stale);
}

/* Replaces the item's record by a copy with the reason it was not recorded. */
static void reject(struct item *it, const char *why)
{
	bson_t *marked = rec_error(it->rec, "not recorded: %s", why);

	warnx("not recorded: %s", why);
	bson_destroy(it->rec);
	bson_free(it->line);
	it->rec = marked;
	it->line = NULL;
	it->kind = PASS;
}

/* ---- the updates ---- */

static void append_int(bson_t *doc, const char *key, int64_t n)
{
	if (n >= INT32_MIN && n <= INT32_MAX)
		BSON_APPEND_INT32(doc, key, (int32_t)n);
	else
		BSON_APPEND_INT64(doc, key, n);
}

/* Appends the product's row fields, which every record of it sets. */
static void append_row_fields(bson_t *doc, const bson_t *rec, int64_t now)
{
	bson_iter_t urls, copies;

	bson_iter_init_find(&urls, rec, "input_image_urls");
	BSON_APPEND_UTF8(doc, "batch_id", rec_str(rec, "batch_id"));
	append_int(doc, "serial_no", rec_int(rec, "serial_no", 0));
	BSON_APPEND_UTF8(doc, "product_name", rec_str(rec, "product_name"));
	bson_append_iter(doc, NULL, 0, &urls);
	if (rec_int(rec, "chunk", -1) >= 0)     /* the chunk of the batch it belongs to */
		append_int(doc, "chunk", rec_int(rec, "chunk", 0));
	if (rec_int(rec, "rank", -1) >= 0) {    /* its place in serial order (lib/products.c) */
		append_int(doc, "rank", rec_int(rec, "rank", 0));
		append_int(doc, "rank_group", rec_int(rec, "rank", 0) / DB_RANK_GROUP);
	}
	/* the slots whose URL an earlier slot of the batch has (the planning job's) */
	if (bson_iter_init_find(&copies, rec, "copies") && BSON_ITER_HOLDS_ARRAY(&copies))
		bson_append_iter(doc, NULL, 0, &copies);
	BSON_APPEND_DATE_TIME(doc, "updatedAt", now);
}

/* Appends the fields a new product starts with: createdAt and an empty output slot for
 * each input URL. */
static void append_new_fields(bson_t *doc, const bson_t *rec, int64_t now)
{
	int n = string_array(rec, "input_image_urls");
	bson_t outs;
	char idx[16];
	const char *key;

	BSON_APPEND_DATE_TIME(doc, "createdAt", now);
	bson_append_array_begin(doc, "output_image_urls", -1, &outs);
	for (int i = 0; i < n; i++) {
		bson_uint32_to_string((uint32_t)i, &key, idx, sizeof idx);
		BSON_APPEND_UTF8(&outs, key, "");
	}
	bson_append_array_end(doc, &outs);
}

/* The product item's product whole, as product_update makes it when it is missing; NULL
 * for any other item. */
static bson_t *product_document(const struct item *it, int64_t now)
{
	bson_t *doc, errors;

	if (it->kind != PRODUCT)
		return NULL;
	doc = BCON_NEW("_id", BCON_UTF8(it->id));
	append_row_fields(doc, it->rec, now);
	append_new_fields(doc, it->rec, now);
	bson_append_array_begin(doc, "errors", -1, &errors);
	bson_append_array_end(doc, &errors);
	return doc;
}

/* Refreshes the product's row fields; output_image_urls, errors and createdAt are set
 * only when the product is new, so a rerun never wipes a finished slot or an error. */
static bson_t *product_update(const bson_t *rec, int64_t now)
{
	bson_t *u = bson_new(), set, init, push, none, each;

	bson_append_document_begin(u, "$set", -1, &set);
	append_row_fields(&set, rec, now);
	bson_append_document_end(u, &set);
	bson_append_document_begin(u, "$setOnInsert", -1, &init);
	append_new_fields(&init, rec, now);
	bson_append_document_end(u, &init);

	/* errors starts empty: pushing no entry makes it when missing and keeps it otherwise
	 * (FerretDB's $setOnInsert drops an empty array) */
	bson_append_document_begin(u, "$push", -1, &push);
	bson_append_document_begin(&push, "errors", -1, &none);
	bson_append_array_begin(&none, "$each", -1, &each);
	bson_append_array_end(&none, &each);
	bson_append_document_end(&push, &none);
	bson_append_document_end(u, &push);
	return u;
}

/* Appends doc to the array arr as its element *n, counting it. */
static void array_push(bson_t *arr, uint32_t *n, const bson_t *doc)
{
	char idx[16];
	const char *key;

	bson_uint32_to_string((*n)++, &key, idx, sizeof idx);
	BSON_APPEND_DOCUMENT(arr, key, doc);
}

/* The entry of the product's errors that an image record with an error makes. */
static bson_t *error_entry(const bson_t *rec)
{
	bson_t *entry = bson_new();

	append_int(entry, "index", rec_int(rec, "index", 0));
	BSON_APPEND_UTF8(entry, "url", rec_str(rec, "url"));
	BSON_APPEND_UTF8(entry, "error", rec_str(rec, "error"));
	return entry;
}

bson_t *select_entries(const bson_t *errors, int64_t index, bool others)
{
	bson_t *out = bson_new(), entry;
	bson_iter_t it;
	uint32_t n = 0;

	if (bson_iter_init(&it, errors))
		while (rec_next_doc(&it, &entry))
			if ((rec_int(&entry, "index", -1) == index) != others)
				array_push(out, &n, &entry);
	return out;
}

/* Appends to the array arr, of *n entries, what the image record adds to the product's
 * errors: its error entry, or nothing for a success. */
static void push_outcome(bson_t *arr, uint32_t *n, const bson_t *rec)
{
	bson_t *entry;

	if (!rec_str(rec, "error"))
		return;
	entry = error_entry(rec);
	array_push(arr, n, entry);
	bson_destroy(entry);
}

/* True when the image's error is already all that errors holds for the image: a rerun
 * that records it again changes nothing. */
static bool error_recorded(const struct item *it)
{
	bson_t *entry, stored;
	bson_iter_t el;
	bool same;

	if (!rec_str(it->rec, "error") || bson_count_keys(it->stale) != 1 ||
	    !bson_iter_init(&el, it->stale) || !rec_next_doc(&el, &stored))
		return false;
	entry = error_entry(it->rec);
	same = bson_equal(entry, &stored);
	bson_destroy(entry);
	return same;
}

/* How an image record's output was made: reused (fetchimg found its source unchanged) or
 * compressed. */
static const char *image_how(const bson_t *rec)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, rec, "reused") && BSON_ITER_HOLDS_BOOL(&it) &&
	       bson_iter_bool(&it) ? "reused" : "compressed";
}

/* Sets the image's slot: its output URL and, when the record has them (from fetchimg and
 * shrink), its sizes, how it was made and whether the source was kept, under the image's
 * index; or "" for an error.  Takes out of
 * errors the entries it held for the image, and the one this error makes (error_push
 * adds it next), by value: $pullAll matches whole documents alike in MongoDB and in
 * FerretDB 1.24, which has no $pull by condition, arrayFilters nor positional updates.
 * So a rerun replaces the outcome rather than adding one, and a write cut short and
 * repeated leaves one entry. */
static bson_t *image_update(const struct item *it, int64_t now)
{
	const bson_t *rec = it->rec;
	long long index = (long long)rec_int(rec, "index", 0);
	int64_t in = rec_int(rec, "input_bytes", -1), out = rec_int(rec, "output_bytes", -1);
	const char *error = rec_str(rec, "error");
	int sized = !error && in >= 0 && out >= 0;
	char slot[48], sizekey[48];
	bson_t *u = bson_new(), set, unset, sizes, pull, gone, entry;
	bson_iter_t old;
	uint32_t n = 0;

	snprintf(slot, sizeof slot, "output_image_urls.%lld", index);
	snprintf(sizekey, sizeof sizekey, "image_sizes.%lld", index);
	bson_append_document_begin(u, "$set", -1, &set);
	BSON_APPEND_UTF8(&set, slot, error ? "" : rec_str(rec, "output_url"));
	BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
	if (sized) {
		bson_append_document_begin(&set, sizekey, -1, &sizes);
		BSON_APPEND_INT64(&sizes, "input_bytes", in);
		BSON_APPEND_INT64(&sizes, "output_bytes", out);
		BSON_APPEND_UTF8(&sizes, "how", image_how(rec));
		if (rec_str(rec, "kept"))
			BSON_APPEND_UTF8(&sizes, "kept", rec_str(rec, "kept"));
		bson_append_document_end(&set, &sizes);
	}
	bson_append_document_end(u, &set);
	if (!sized) {
		bson_append_document_begin(u, "$unset", -1, &unset);
		BSON_APPEND_UTF8(&unset, sizekey, "");
		bson_append_document_end(u, &unset);
	}

	if (error_recorded(it) || (!error && bson_empty(it->stale)))
		return u;
	bson_append_document_begin(u, "$pullAll", -1, &pull);
	bson_append_array_begin(&pull, "errors", -1, &gone);
	if (bson_iter_init(&old, it->stale))
		while (rec_next_doc(&old, &entry))
			array_push(&gone, &n, &entry);
	push_outcome(&gone, &n, rec);
	bson_append_array_end(&pull, &gone);
	bson_append_document_end(u, &pull);
	return u;
}

/* Adds the image's error to errors, after image_update took out every entry for the
 * image; NULL when there is nothing to add. */
static bson_t *error_push(const struct item *it)
{
	bson_t *u, *entry;

	if (!rec_str(it->rec, "error") || error_recorded(it))
		return NULL;
	entry = error_entry(it->rec);
	u = BCON_NEW("$push", "{", "errors", BCON_DOCUMENT(entry), "}");
	bson_destroy(entry);
	return u;
}

/* What a flush's images move in their batch's progress counters. */
struct counts {
	int64_t done, failed;
	int64_t compressed, reused;     /* slots newly done, by how (image_how) */
	int64_t saved;                  /* their input_bytes - output_bytes */
};

static bool counts_moved(const struct counts *c)
{
	return c->done || c->failed || c->compressed || c->reused || c->saved;
}

/* The batch's part of a flush: it exists (as 'in progress' when this creates it) and,
 * when updated, was updated now; and the flush's images moved its counters by done and
 * failed. */
static bson_t *batch_touch(int64_t now, const struct counts *c, bool unranked, bool updated)
{
	bson_t *u = bson_new(), set, created;

	if (updated || unranked) {      /* (MongoDB before 5.0 refuses an empty $set) */
		bson_append_document_begin(u, "$set", -1, &set);
		if (updated)
			BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
		if (unranked)   /* its pages are read sorted (lib/products.c) */
			BSON_APPEND_BOOL(&set, "unranked", true);
		bson_append_document_end(u, &set);
	}
	bson_append_document_begin(u, "$setOnInsert", -1, &created);
	BSON_APPEND_UTF8(&created, "status", "in progress");
	BSON_APPEND_DATE_TIME(&created, "createdAt", now);
	if (!updated)
		BSON_APPEND_DATE_TIME(&created, "updatedAt", now);
	bson_append_document_end(u, &created);

	if (counts_moved(c))
		BCON_APPEND(u, "$inc", "{", "progress.images_done", BCON_INT64(c->done),
			    "progress.images_failed", BCON_INT64(c->failed),
			    "progress.images_compressed", BCON_INT64(c->compressed),
			    "progress.images_reused", BCON_INT64(c->reused),
			    "progress.bytes_saved", BCON_INT64(c->saved), "}");
	return u;
}

/* A row error's or a delivery's entry in its set on the batch, with the batch's touch.
 * A delivery leaves updatedAt as it is: an ended batch's updated_at says when it ended,
 * not when its webhook was last tried (retries go on for up to an hour). */
static bson_t *batch_entry(const struct item *it, int64_t now)
{
	static const char *const delivery_fields[] = {
		"delivery", "event", "attempt", "attempts", "status_code", "delivered", "gave_up", "at",
		"error", "ending", NULL,
	};
	static const struct counts none;
	bson_t *u = batch_touch(now, &none, false, it->kind == ROW_ERROR);
	bson_t add, entry;
	bson_iter_t f;

	bson_append_document_begin(u, "$addToSet", -1, &add);
	if (it->kind == ROW_ERROR) {
		bson_append_document_begin(&add, "row_errors", -1, &entry);
		append_int(&entry, "line", rec_int(it->rec, "line", 0));
		BSON_APPEND_UTF8(&entry, "error", rec_str(it->rec, "error"));
	} else {
		bson_append_document_begin(&add, "webhook_deliveries", -1, &entry);
		for (const char *const *k = delivery_fields; *k; k++)
			if (bson_iter_init_find(&f, it->rec, *k))
				bson_append_iter(&entry, NULL, 0, &f);
		if (!bson_has_field(it->rec, "at"))
			BSON_APPEND_DATE_TIME(&entry, "at", now);
	}
	bson_append_document_end(&add, &entry);
	bson_append_document_end(u, &add);
	return u;
}

/* Adds one upsert (or plain update) to the bulk; false with err when it is malformed.
 * Every selector is an _id, so update_many changes one document; it is used because
 * FerretDB 1.24 on SQLite holds a connection for each update_one that matched until the
 * whole command ends, and deadlocks once a hundred are held, while update_many does not. */
static bool add_update(mongoc_bulk_operation_t *b, bson_t *sel, bson_t *update, bool upsert,
		       bson_error_t *err)
{
	bson_t *opts = BCON_NEW("upsert", BCON_BOOL(upsert));
	bool ok = mongoc_bulk_operation_update_many_with_opts(b, sel, update, opts, err);

	bson_destroy(sel);
	bson_destroy(update);
	bson_destroy(opts);
	return ok;
}

/* What the image record changes in its batch's counters, added to c: a slot that gains
 * an output is one more done (and one fewer failed if it had failed), counted by how it
 * was made with the bytes it saved; a new failure one more failed, and an outcome
 * repeated nothing.  (A done slot done again, or failing, leaves the how counters as they
 * were: only a rerun does that, and recount sets them from the products.) */
static void image_counts(const struct item *it, struct counts *c)
{
	bool fails = rec_str(it->rec, "error") != NULL;
	bool failed_before = !it->was_done && !bson_empty(it->stale);
	int64_t in = rec_int(it->rec, "input_bytes", -1), out = rec_int(it->rec, "output_bytes", -1);

	c->done += (int64_t)!fails - (int64_t)it->was_done;
	c->failed += (int64_t)fails - (int64_t)failed_before;
	if (fails || it->was_done)
		return;
	if (strcmp(image_how(it->rec), "reused") == 0)
		c->reused++;
	else
		c->compressed++;
	if (in >= 0 && out >= 0)
		c->saved += in - out;
}

int source_output_path(const char *settings, char *path, size_t n)
{
	size_t len = (size_t)snprintf(path, n, "outputs.");

	if (!*settings || len + strlen(settings) >= n)
		return -1;
	for (; *settings; settings++)
		path[len++] = *settings == '.' ? '_' : *settings;
	path[len] = '\0';
	return 0;
}

/* The output path ("outputs.SETTINGS") of the source the done image record makes, or
 * false when it makes none: an error, no hash or key, or a source fetchimg found just as
 * sources has it (source_unchanged: a write of the same costs FerretDB as much as any). */
static bool source_path(const bson_t *rec, char *path, size_t n)
{
	const char *settings = rec_str(rec, "settings");
	bson_iter_t it;

	return !rec_str(rec, "error") && rec_str(rec, "sha256") && rec_str(rec, "output_key") &&
	       settings && source_output_path(settings, path, n) == 0 &&
	       !(bson_iter_init_find(&it, rec, "source_unchanged") && bson_iter_as_bool(&it));
}

static const char *const source_validators[] = { "etag", "last_modified", NULL };

/* Appends what the record says of its source: the validators its server sent, its hash
 * and size, its type, and the time. */
static void append_source_fields(bson_t *doc, const bson_t *rec, int64_t now)
{
	for (const char *const *f = source_validators; *f; f++)
		if (rec_str(rec, *f))
			BSON_APPEND_UTF8(doc, *f, rec_str(rec, *f));
	BSON_APPEND_UTF8(doc, "sha256", rec_str(rec, "sha256"));
	if (rec_int(rec, "input_bytes", -1) >= 0)
		BSON_APPEND_INT64(doc, "input_bytes", rec_int(rec, "input_bytes", 0));
	if (rec_str(rec, "content_type"))
		BSON_APPEND_UTF8(doc, "content_type", rec_str(rec, "content_type"));
	BSON_APPEND_DATE_TIME(doc, "updatedAt", now);
}

/* Appends, under key, the output the record says was made of its source. */
static void append_source_output(bson_t *doc, const char *key, const bson_t *rec)
{
	static const char *const output_fields[] = {
		"output_key", "output_url", "output_bytes", "format", "kept", NULL,
	};
	bson_t output;
	bson_iter_t it;

	bson_append_document_begin(doc, key, -1, &output);
	for (const char *const *f = output_fields; *f; f++)
		if (bson_iter_init_find(&it, rec, *f))
			bson_append_iter(&output, *f, -1, &it);
	bson_append_document_end(doc, &output);
}

/* Records the source of a done image in sources, by its URL: the validators its server
 * sent (unset when it sent none: they belong to these bytes), its hash and size, and the
 * output made of it under its settings.  NULL for an image whose record makes none
 * (source_path). */
static bson_t *source_update(const bson_t *rec, int64_t now)
{
	char path[96];
	bson_t *u, set, unset;
	bool unsets = false;

	if (!source_path(rec, path, sizeof path))
		return NULL;
	u = bson_new();
	bson_append_document_begin(u, "$set", -1, &set);
	append_source_fields(&set, rec, now);
	append_source_output(&set, path, rec);
	bson_append_document_end(u, &set);
	for (const char *const *f = source_validators; *f; f++)
		unsets = unsets || !rec_str(rec, *f);
	if (unsets) {
		bson_append_document_begin(u, "$unset", -1, &unset);
		for (const char *const *f = source_validators; *f; f++)
			if (!rec_str(rec, *f))
				BSON_APPEND_UTF8(&unset, *f, "");
		bson_append_document_end(u, &unset);
	}
	return u;
}

/* The source the image item makes, whole, as source_update makes it when it is missing;
 * NULL for any other item. */
static bson_t *source_document(const struct item *it, int64_t now)
{
	char path[96];
	bson_t *doc, outputs;

	if (it->kind != IMAGE || !source_path(it->rec, path, sizeof path))
		return NULL;
	doc = BCON_NEW("_id", BCON_UTF8(rec_str(it->rec, "url")));
	append_source_fields(doc, it->rec, now);
	bson_append_document_begin(doc, "outputs", -1, &outputs);
	append_source_output(&outputs, path + strlen("outputs."), it->rec);
	bson_append_document_end(doc, &outputs);
	return doc;
}

/* Queues the item's own writes, counting them in *np and *nb: products (unless inserted)
 * and images on the products bulk; on the batches bulk a delivery, and a row error that
 * is to be added. */
static bool queue_item(const struct item *it, bool inserted, mongoc_bulk_operation_t *pb,
		       size_t *np, mongoc_bulk_operation_t *bb, size_t *nb, int64_t now,
		       bson_error_t *err)
{
	bson_t *push;

	if (it->kind == PRODUCT && !inserted &&
	    !add_update(pb, BCON_NEW("_id", BCON_UTF8(it->id)), product_update(it->rec, now), true, err))
		return false;
	if (it->kind == IMAGE &&
	    !add_update(pb, BCON_NEW("_id", BCON_UTF8(it->id)), image_update(it, now), false, err))
		return false;
	if (it->kind == IMAGE && (push = error_push(it)) &&
	    !add_update(pb, BCON_NEW("_id", BCON_UTF8(it->id)), push, false, err))
		return false;
	*np += (it->kind == PRODUCT && !inserted) || it->kind == IMAGE;
	if (it->kind != DELIVERY && !(it->kind == ROW_ERROR && it->add_row_error == 1))
		return true;
	(*nb)++;
	return add_update(bb, BCON_NEW("_id", BCON_UTF8(rec_str(it->rec, "batch_id"))),
			  batch_entry(it, now), true, err);
}

/* The batch that the item's touch is for: products', images' and row errors' (deliveries
 * are written with one of their own); NULL for the others. */
static const char *touched_batch(const struct item *it)
{
	return it->kind == PRODUCT || it->kind == IMAGE || it->kind == ROW_ERROR ?
	       rec_str(it->rec, "batch_id") : NULL;
}

/* The batch whose document this process touched last, and when.  For products and images
 * the batch document needs only to exist and show recent activity, so it is touched at
 * most once a second per batch rather than once an image, unless its counters move. */
static struct { char *id; int64_t at; } last_touch;

static bool touched_lately(const char *batch, int64_t now)
{
	return last_touch.id && strcmp(last_touch.id, batch) == 0 && now - last_touch.at < 1000;
}

/* Queues one touch for each batch of the items, with one $inc of what all of its images
 * among them change in its counters (so a flush writes a batch once, not once an image),
 * counting them in *nb.  *last is the batch touched last, or stays NULL. */
static bool queue_touches(const struct item *items, size_t n, mongoc_bulk_operation_t *bb,
			  size_t *nb, int64_t now, const char **last, bson_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *batch = touched_batch(&items[i]), *other;
		struct counts c = { 0 };
		bool first = batch != NULL, unranked = false;

		for (size_t j = 0; first && j < i; j++)
			first = !(other = touched_batch(&items[j])) || strcmp(other, batch) != 0;
		if (!first)
			continue;
		for (size_t j = i; j < n; j++) {
			if (!(other = touched_batch(&items[j])) || strcmp(other, batch) != 0)
				continue;
			if (items[j].kind == IMAGE)
				image_counts(&items[j], &c);
			unranked |= items[j].kind == PRODUCT && !bson_has_field(items[j].rec, "rank");
		}
		if (!counts_moved(&c) && !unranked && touched_lately(batch, now))
			continue;
		(*nb)++;
		*last = batch;
		if (!add_update(bb, BCON_NEW("_id", BCON_UTF8(batch)), batch_touch(now, &c, unranked, true),
				true, err))
			return false;
	}
	return true;
}

/* Products as the database holds them after this process's last write: their number
 * of input URLs, and the state of their slots (the entries of their errors and which
 * slots hold an output; NULL while unknown), as written or read.
 * A product's images follow one another in a pipeline, so most images need no query.
 * This holds while one process at a time writes a product's images, as process-batch
 * arranges. */
#define KNOWN_MAX 64
static struct known {
	char *id;
	int64_t urls;
	bson_t *errors;            /* an array; NULL while the slots are unknown */
	bool *done;                /* done[i]: slot i holds an output URL; known with errors */
	int64_t slots;             /* the length of done */
} known[KNOWN_MAX];
static size_t known_next;

static struct known *known_find(const char *id)
{
	for (size_t i = 0; i < KNOWN_MAX; i++)
		if (known[i].id && strcmp(known[i].id, id) == 0)
			return &known[i];
	return NULL;
}

/* What is known of product id, made in the place of the oldest when nothing is. */
static struct known *known_get(const char *id)
{
	struct known *k = known_find(id);

	if (k)
		return k;
	k = &known[known_next];
	known_next = (known_next + 1) % KNOWN_MAX;
	bson_free(k->id);
	bson_destroy(k->errors);
	bson_free(k->done);
	*k = (struct known){ .id = bson_strdup(id), .urls = -1 };
	return k;
}

static void forget_products(void)
{
	for (size_t i = 0; i < KNOWN_MAX; i++) {
		bson_free(known[i].id);
		bson_destroy(known[i].errors);
		bson_free(known[i].done);
	}
}

/* After a write: what is known of the items' products becomes what was written. */
static void remember_written(const struct item *items, size_t n)
{
	struct known *k;
	bson_t *kept;
	uint32_t count;

	for (size_t i = 0; i < n; i++) {
		int64_t index = rec_int(items[i].rec, "index", 0);

		if (items[i].kind == PRODUCT)
			known_get(items[i].id)->urls = items[i].urls;
		if (items[i].kind != IMAGE || !(k = known_find(items[i].id)) || !k->errors)
			continue;
		kept = select_entries(k->errors, index, true);
		count = (uint32_t)bson_count_keys(kept);
		push_outcome(kept, &count, items[i].rec);
		bson_destroy(k->errors);
		k->errors = kept;
		if (index < k->slots)
			k->done[index] = !rec_str(items[i].rec, "error");
	}
}

/* Which of the product's slots hold an output URL, from its output_image_urls, into k. */
static void read_done(struct known *k, const bson_t *product)
{
	bson_iter_t it, slot;

	bson_free(k->done);
	k->slots = k->urls;
	k->done = bson_malloc0(sizeof *k->done * (size_t)(k->slots > 0 ? k->slots : 1));
	if (bson_iter_init_find(&it, product, "output_image_urls") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &slot))
		for (int64_t i = 0; i < k->slots && bson_iter_next(&slot); i++)
			k->done[i] = BSON_ITER_HOLDS_UTF8(&slot) && *bson_iter_utf8(&slot, NULL);
}

/* Reads product id's number of input URLs and the state of its slots into what is known
 * of it; nothing when there is no such product.  One _id equality a query: FerretDB pushes
 * that down to SQLite, and scans the whole collection for an $in. */
static bool query_product(const char *id, bson_error_t *err)
{
	bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
	bson_t *opts = BCON_NEW("projection", "{", "input_image_urls", BCON_INT32(1),
				"output_image_urls", BCON_INT32(1), "errors", BCON_INT32(1), "}",
				"limit", BCON_INT64(1));
	mongoc_cursor_t *c = mongoc_collection_find_with_opts(db.products, filter, opts, NULL);
	const bson_t *doc;
	struct known *k;
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;
	bool ok;

	if (mongoc_cursor_next(c, &doc)) {
		k = known_get(id);
		k->urls = string_array(doc, "input_image_urls");
		bson_destroy(k->errors);
		if (bson_iter_init_find(&it, doc, "errors") && BSON_ITER_HOLDS_ARRAY(&it)) {
			bson_iter_array(&it, &len, &data);
			k->errors = bson_new_from_data(data, len);
		} else {
			k->errors = bson_new();
		}
		read_done(k, doc);
	}
	ok = !mongoc_cursor_error(c, err);
	mongoc_cursor_destroy(c);
	bson_destroy(opts);
	bson_destroy(filter);
	return ok;
}

/* What the image record's "recorded" (dbrecord pending's) says of its slot when it was
 * listed: the product's number of input URLs, and the slot's entries in errors, made again
 * by error_entry so that $pullAll finds them whole after their trip through JSON.  False
 * when the record has none. */
static bool read_recorded(const bson_t *rec, int64_t *urls, bson_t **stale)
{
	bson_t recorded, entries, entry, *made;
	bson_iter_t it;
	uint32_t len, n = 0;
	const uint8_t *data;

	if (!bson_iter_init_find(&it, rec, "recorded") || !BSON_ITER_HOLDS_DOCUMENT(&it))
		return false;
	bson_iter_document(&it, &len, &data);
	if (!bson_init_static(&recorded, data, len) || (*urls = rec_int(&recorded, "input_urls", -1)) < 0 ||
	    !bson_iter_init_find(&it, &recorded, "errors") || !BSON_ITER_HOLDS_ARRAY(&it))
		return false;
	bson_iter_array(&it, &len, &data);
	if (!bson_init_static(&entries, data, len) || !bson_iter_init(&it, &entries))
		return false;
	*stale = bson_new();
	while (rec_next_doc(&it, &entry)) {
		made = error_entry(&entry);
		array_push(*stale, &n, made);
		bson_destroy(made);
	}
	return true;
}

/* Looks up what each image needs of its product: its number of input URLs (to refuse an
 * image it lacks), the entries its errors hold for the image (to replace them) and whether
 * its slot held an output (to count the change).  From the records before it in these
 * items, else from what is known, else from the record's "recorded" (pending's), else
 * from the database: a query a product a process.
 * An image looked up before a failed query keeps what it found, so this can be called
 * again. */
static bool look_up_products(struct item *items, size_t n, bson_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		int64_t index = rec_int(it->rec, "index", 0);
		const struct item *product = NULL, *earlier = NULL;
		struct known *k;
		uint32_t none = 0;
		int64_t listed_urls;

		if (it->kind != IMAGE || it->stale)
			continue;
		for (size_t j = i; j-- > 0 && !(product && earlier);) {
			if (!items[j].id || strcmp(items[j].id, it->id) != 0)
				continue;
			if (items[j].kind == PRODUCT && !product)
				product = &items[j];
			else if (items[j].kind == IMAGE && !earlier &&
				 rec_int(items[j].rec, "index", 0) == index)
				earlier = &items[j];
		}
		k = known_find(it->id);
		if (!earlier && !(k && k->errors) && read_recorded(it->rec, &listed_urls, &it->stale)) {
			it->urls = product ? product->urls : k && k->urls >= 0 ? k->urls : listed_urls;
			it->was_done = false;   /* pending lists only slots without an output */
			continue;
		}
		if ((!product && !k) || (!earlier && !(k && k->errors))) {
			if (!query_product(it->id, err))
				return false;
			k = known_find(it->id);
		}
		it->urls = product ? product->urls : k ? k->urls : -1;
		if (earlier) {
			it->stale = bson_new();
			push_outcome(it->stale, &none, earlier->rec);
			it->was_done = !rec_str(earlier->rec, "error");
		} else {
			it->stale = k && k->errors ? select_entries(k->errors, index, false) : bson_new();
			it->was_done = k && k->errors && index < k->slots && k->done[index];
		}
	}
	return true;
}

/* Image records whose product lacks that image are not recorded: setting their slot
 * would make a product that does not exist, or grow output_image_urls past its inputs. */
static void reject_strays(struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind != IMAGE || rec_int(items[i].rec, "index", 0) < items[i].urls)
			continue;
		char *why = bson_strdup_printf("no product %s with image %lld", items[i].id,
					       (long long)rec_int(items[i].rec, "index", 0));
		reject(&items[i], why);
		bson_free(why);
	}
}

/* The lines of the row errors that a batch holds, as read once and then as added, so
 * that its list stays within IMGPIPE_MAX_ROW_ERRORS and a rerun adds no line twice.  One
 * batch at a time: its rows come together. */
static struct {
	char *batch;
	int64_t *lines;
	size_t n, cap;
} row_errors;

static void row_errors_add(int64_t line)
{
	if (row_errors.n == row_errors.cap) {
		row_errors.cap = row_errors.cap ? 2 * row_errors.cap : 64;
		row_errors.lines = bson_realloc(row_errors.lines, sizeof *row_errors.lines * row_errors.cap);
	}
	row_errors.lines[row_errors.n++] = line;
}

static bool row_errors_has(int64_t line)
{
	for (size_t i = 0; i < row_errors.n; i++)
		if (row_errors.lines[i] == line)
			return true;
	return false;
}

/* Reads the lines of batch's row errors into row_errors. */
static bool query_row_errors(const char *batch, bson_error_t *err)
{
	bson_t *filter = BCON_NEW("_id", BCON_UTF8(batch));
	bson_t *opts = BCON_NEW("projection", "{", "row_errors", BCON_INT32(1), "}",
				"limit", BCON_INT64(1));
	mongoc_cursor_t *c = mongoc_collection_find_with_opts(db.batches, filter, opts, NULL);
	const bson_t *doc;
	bson_iter_t it, el;
	bson_t entry;
	bool ok;

	row_errors.n = 0;
	if (mongoc_cursor_next(c, &doc) && bson_iter_init_find(&it, doc, "row_errors") &&
	    BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &el))
		while (rec_next_doc(&el, &entry))
			row_errors_add(rec_int(&entry, "line", 0));
	ok = !mongoc_cursor_error(c, err);
	if (ok) {
		bson_free(row_errors.batch);
		row_errors.batch = bson_strdup(batch);
	}
	mongoc_cursor_destroy(c);
	bson_destroy(opts);
	bson_destroy(filter);
	return ok;
}

/* Decides for each row error whether it is added to its batch's list: not when its line
 * is there already, nor once the list is full.  Decided once an item, so this can be
 * called again after a failed query. */
static bool look_up_row_errors(struct item *items, size_t n, bson_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		const char *batch = rec_str(it->rec, "batch_id");
		int64_t line = rec_int(it->rec, "line", 0);

		if (it->kind != ROW_ERROR || it->add_row_error >= 0)
			continue;
		if ((!row_errors.batch || strcmp(row_errors.batch, batch) != 0) &&
		    !query_row_errors(batch, err))
			return false;
		it->add_row_error = !row_errors_has(line) && row_errors.n < (size_t)cfg.max_row_errors;
		if (it->add_row_error)
			row_errors_add(line);
	}
	return true;
}

/* --all-rows: the rows recorded for each batch, and their images. */
static struct rows_count {
	char *batch;
	int64_t done, failed, images;
} *rows_counts;
static size_t rows_batches;

static void count_rows(const struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *batch = rec_str(items[i].rec, "batch_id");
		struct rows_count *c = NULL;

		if (items[i].kind != PRODUCT && items[i].kind != ROW_ERROR)
			continue;
		for (size_t b = 0; !c && b < rows_batches; b++)
			if (strcmp(rows_counts[b].batch, batch) == 0)
				c = &rows_counts[b];
		if (!c) {
			rows_counts = bson_realloc(rows_counts, sizeof *rows_counts * (rows_batches + 1));
			c = &rows_counts[rows_batches++];
			*c = (struct rows_count){ .batch = bson_strdup(batch) };
		}
		if (items[i].kind == PRODUCT) {
			c->done++;
			c->images += items[i].urls;
		} else {
			c->failed++;
		}
	}
}

/* --all-rows, at the end of the input: sets each batch's row counts and images_total from
 * what was recorded, with $set, so a rerun of the same rows sets the same. */
static void write_rows_counts(void)
{
	struct retry r = { 0 };
	bson_error_t error;

	for (size_t b = 0; b < rows_batches; b++) {
		const struct rows_count *c = &rows_counts[b];
		int64_t now = db_now();
		bson_t *sel = BCON_NEW("_id", BCON_UTF8(c->batch));
		bson_t *update = BCON_NEW("$set", "{", "progress.rows_done", BCON_INT64(c->done),
					  "progress.rows_failed", BCON_INT64(c->failed),
					  "progress.images_total", BCON_INT64(c->images),
					  "updatedAt", BCON_DATE_TIME(now), "}",
					  "$setOnInsert", "{", "status", BCON_UTF8("in progress"),
					  "createdAt", BCON_DATE_TIME(now), "}");
		bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));

		while (!mongoc_collection_update_one(db.batches, sel, update, opts, NULL, &error))
			retry_or_exit(&r, &error, NULL);
		bson_destroy(sel);
		bson_destroy(update);
		bson_destroy(opts);
		bson_free(c->batch);
	}
	bson_free(rows_counts);
}

/* Runs a bulk of n operations (none: nothing to do).  reply is initialised before and
 * after. */
static bool run_bulk(mongoc_bulk_operation_t *b, size_t n, bson_t *reply, bson_error_t *err)
{
	if (n == 0)
		return true;
	bson_destroy(reply);
	return mongoc_bulk_operation_execute(b, reply, err) != 0;
}

/* Inserts whole, in one unordered insert into coll, the document that make gives each
 * item (NULL: none), setting inserted[i] for each that was new.  Products and sources are
 * new but when recorded again, and FerretDB inserts many documents for less than one
 * upsert costs (0.2 ms a document against 2.5, bench/ferretdb-backends).  One there
 * already (a duplicate _id) is left to the upsert; any other failure fails the whole, and
 * inserted is then to be ignored.  Once a write batch finds all of its documents there
 * (rows recorded again), *again sends the rest straight to the upserts: a refused insert
 * costs FerretDB an insert too. */
static bool insert_whole(mongoc_collection_t *coll, const struct item *items, size_t n,
			 bson_t *(*make)(const struct item *, int64_t), int64_t now,
			 bool *inserted, bool *again, bson_t *reply, bson_error_t *err)
{
	bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false)), *doc, entry;
	mongoc_bulk_operation_t *b = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
	size_t which[FLUSH_MAX], k = 0, there = 0;
	bson_iter_t it;
	bool ok = true;

	for (size_t i = 0; ok && i < n; i++) {
		doc = *again ? NULL : make(&items[i], now);
		if (!(inserted[i] = doc != NULL))
			continue;
		which[k++] = i;
		ok = mongoc_bulk_operation_insert_with_opts(b, doc, NULL, err);
		bson_destroy(doc);
	}
	if (ok && !run_bulk(b, k, reply, err)) {
		/* a reply without write errors is a failure of the command as a whole */
		ok = bson_iter_init_find(&it, reply, "writeErrors") && bson_iter_recurse(&it, &it);
		while (ok && rec_next_doc(&it, &entry)) {
			int64_t at = rec_int(&entry, "index", -1);
			ok = rec_int(&entry, "code", 0) == DUPLICATE_KEY && at >= 0 && (size_t)at < k;
			if (ok) {
				inserted[which[at]] = false;
				there++;
			}
		}
		*again = ok && there == k;
	}
	mongoc_bulk_operation_destroy(b);
	bson_destroy(opts);
	return ok;
}

/* Records the sources of the items' done images: inserted whole when new, else upserted. */
static bool write_sources(const struct item *items, size_t n, int64_t now, bson_t *reply,
			  bson_error_t *err)
{
	static bool again;
	mongoc_bulk_operation_t *b = mongoc_collection_create_bulk_operation_with_opts(db.sources, NULL);
	bool inserted[FLUSH_MAX];
	bson_t *source;
	size_t ns = 0;
	bool ok = insert_whole(db.sources, items, n, source_document, now, inserted, &again,
			       reply, err);

	for (size_t i = 0; ok && i < n; i++)
		if (items[i].kind == IMAGE && !inserted[i] && (source = source_update(items[i].rec, now))) {
			ns++;
			ok = add_update(b, BCON_NEW("_id", BCON_UTF8(rec_str(items[i].rec, "url"))),
					source, true, err);
		}
	ok = ok && run_bulk(b, ns, reply, err);
	mongoc_bulk_operation_destroy(b);
	return ok;
}

/* Writes the items' updates in one ordered bulk a collection: ordered, so that an image
 * follows its product when both are in the same bulk.  The products go first: a batch
 * whose counters are written lags its products, never leads them; and a source is
 * recorded only once its image is. */
static bool write_items(const struct item *items, size_t n, int64_t now, bson_t *reply,
			bson_error_t *err)
{
	static bool products_again;
	mongoc_bulk_operation_t *pb = mongoc_collection_create_bulk_operation_with_opts(db.products, NULL);
	mongoc_bulk_operation_t *bb = mongoc_collection_create_bulk_operation_with_opts(db.batches, NULL);
	const char *last = NULL;
	size_t np = 0, nb = 0;
	bool inserted[FLUSH_MAX], ok = insert_whole(db.products, items, n, product_document, now,
						    inserted, &products_again, reply, err);

	for (size_t i = 0; ok && i < n; i++)
		if (items[i].kind != PASS)
			ok = queue_item(&items[i], inserted[i], pb, &np, bb, &nb, now, err);
	ok = ok && queue_touches(items, n, bb, &nb, now, &last, err) &&
	     run_bulk(pb, np, reply, err) && write_sources(items, n, now, reply, err) &&
	     run_bulk(bb, nb, reply, err);
	if (ok)
		remember_written(items, n);
	if (ok && last) {
		bson_free(last_touch.id);
		last_touch.id = bson_strdup(last);
		last_touch.at = now;
	}
	mongoc_bulk_operation_destroy(pb);
	mongoc_bulk_operation_destroy(bb);
	return ok;
}

/* Records the items, retrying while MongoDB is away (every update is idempotent, so a
 * write batch cut short is simply written again), then echoes them and empties the batch. */
static void flush(struct item *items, size_t *n)
{
	struct retry r = { 0 };
	bson_t reply = BSON_INITIALIZER;
	bson_error_t error;
	int64_t now = db_now();

	if (*n > 0) {
		while (!look_up_products(items, *n, &error) ||
		       !look_up_row_errors(items, *n, &error))
			retry_or_exit(&r, &error, NULL);
		reject_strays(items, *n);
		while (!write_items(items, *n, now, &reply, &error))
			retry_or_exit(&r, &error, &reply);
		if (all_rows)
			count_rows(items, *n);
	}
	bson_destroy(&reply);
	for (size_t i = 0; i < *n; i++) {
		if (items[i].line)
			stage_write_line(items[i].line);
		else
			stage_write(items[i].rec);
		item_free(&items[i]);
	}
	*n = 0;
}

/* True when more input is ready by the time deadline (libbson's monotonic clock, in
 * microseconds): in stdio's buffer (glibc's FILE read pointers, as gnulib's freadahead
 * reads them) or on the descriptor. */
static int input_pending(FILE *f, int64_t deadline)
{
	struct pollfd p = { .fd = fileno(f), .events = POLLIN };
	int64_t wait_ms = (deadline - bson_get_monotonic_time()) / 1000;

	return f->_IO_read_ptr < f->_IO_read_end || poll(&p, 1, wait_ms > 0 ? (int)wait_ms : 0) > 0;
}

/* NDJSON mode: records in write batches of up to FLUSH_MAX, each flushed early when
 * the input runs dry for FLUSH_WAIT_MS after the batch's first record: an image
 * pipeline sends a record every tens of ms, and a write batch of one image costs three
 * MongoDB commands (bench/roundtrips), a batch of several barely more.  Returns the exit
 * status. */
int record_stream(bool every_row)
{
	struct stage s;
	struct item items[FLUSH_MAX];
	size_t n = 0;
	int64_t first_at = 0;
	bson_t *rec;
	enum stage_line got;

	all_rows = every_row;
	connect_db();
	prepare_products();
	stage_init(&s, NULL);
	s.takes_errors = 1;        /* image and row errors are recorded too */
	while ((got = stage_read(&s, &rec)) != STAGE_END) {
		if (got == STAGE_PASS) {
			flush(items, &n);  /* so that its line keeps its place in the output */
			stage_pass(&s);
			continue;
		}
		if (n == 0)
			first_at = bson_get_monotonic_time();
		items[n++] = item_new(rec, &s);
		if (n == FLUSH_MAX || !input_pending(stdin, first_at + FLUSH_WAIT_MS * 1000))
			flush(items, &n);
	}
	flush(items, &n);
	if (all_rows)
		write_rows_counts();
	forget_products();
	bson_free(last_touch.id);
	bson_free(row_errors.batch);
	bson_free(row_errors.lines);
	return stage_end(&s);
}
