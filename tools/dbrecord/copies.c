/* dbrecord copies ID: gives each copy slot of a batch the outcome of its owner.
 *
 * The planning job marks as a copy every slot whose URL an earlier slot of the batch
 * names (the product's "copies", docs/design.md section 4); only the first slot of a URL,
 * its owner, is fetched, compressed and recorded.  This runs at the batch's end, when no
 * job writes its products any more: one pass over them in serial order learns each
 * owner's outcome (its output URL and sizes, or its error) and sets every copy to it, so
 * a copy counts as done or failed as its owner does.  Every write sets what the owner
 * holds, so a rerun (after a crash, or after a retry in which the owner succeeded) sets
 * the copies again and changes only what differs. */
#include <search.h>
#include <string.h>

#include "dbrecord.h"

#define BULK_MAX 256               /* product updates a bulk write */

/* The outcome of the batch's first slot of a URL. */
struct owner {
	char *url;
	char *output_url;          /* "" while it has none */
	bson_t *sizes;             /* its image_sizes entry; NULL when it has none */
	char *error;               /* its entry in errors; NULL when it has none */
};

struct pass {
	void *owners;              /* a tsearch tree of struct owner, by URL */
	bson_t **deferred;         /* products with a copy whose owner comes later in serial
	                            * order (the CSV's order is not always the serials') */
	size_t ndeferred;
	mongoc_bulk_operation_t *bulk;
	size_t queued;             /* updates in bulk */
	int64_t copies, updated;   /* copy slots seen, and set (they differed) */
};

static int owner_cmp(const void *a, const void *b)
{
	return strcmp(((const struct owner *)a)->url, ((const struct owner *)b)->url);
}

static void owner_free(void *p)
{
	struct owner *o = p;

	bson_free(o->url);
	bson_free(o->output_url);
	bson_destroy(o->sizes);
	bson_free(o->error);
	bson_free(o);
}

static const struct owner *owner_find(const struct pass *p, const char *url)
{
	struct owner key = { .url = (char *)url };
	struct owner *const *found = tfind(&key, &p->owners, owner_cmp);

	return found ? *found : NULL;
}

/* The iterator at PATH ("field.N" for an element) of doc; false when there is none. */
static bool find_path(const bson_t *doc, const char *path, bson_iter_t *at)
{
	bson_iter_t it;

	return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, at);
}

/* The string at field.index of doc, or "" when there is none. */
static const char *slot_str(const bson_t *doc, const char *field, int64_t index)
{
	char path[64];
	bson_iter_t it;

	snprintf(path, sizeof path, "%s.%lld", field, (long long)index);
	return find_path(doc, path, &it) && BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
}

/* The product's image_sizes entry for index, a copy; NULL when there is none. */
static bson_t *sizes_of(const bson_t *product, int64_t index)
{
	char path[64];
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;

	snprintf(path, sizeof path, "image_sizes.%lld", (long long)index);
	if (!find_path(product, path, &it) || !BSON_ITER_HOLDS_DOCUMENT(&it))
		return NULL;
	bson_iter_document(&it, &len, &data);
	return bson_new_from_data(data, len);
}

/* The error of the product's errors entry for index; NULL when there is none. */
static const char *error_of(const bson_t *product, int64_t index)
{
	bson_iter_t it, el;
	bson_t entry;

	if (!bson_iter_init_find(&it, product, "errors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &el))
		return NULL;
	while (rec_next_doc(&el, &entry))
		if (rec_int(&entry, "index", -1) == index && rec_str(&entry, "error"))
			return rec_str(&entry, "error");
	return NULL;
}

/* True when slot index of the product is one of its copies. */
bool is_copy(const bson_t *product, int64_t index)
{
	bson_iter_t it, el;

	if (bson_iter_init_find(&it, product, "copies") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &el))
		while (bson_iter_next(&el))
			if (BSON_ITER_HOLDS_INT(&el) && bson_iter_as_int64(&el) == index)
				return true;
	return false;
}

/* Learns the outcome of each of the product's slots that is no copy and whose URL has
 * no owner yet. */
static void learn_owners(struct pass *p, const bson_t *product)
{
	bson_iter_t it, url;

	if (!bson_iter_init_find(&it, product, "input_image_urls") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &url))
		return;
	for (int64_t i = 0; bson_iter_next(&url); i++) {
		const char *error;
		struct owner *o, **slot;

		if (!BSON_ITER_HOLDS_UTF8(&url) || is_copy(product, i) ||
		    owner_find(p, bson_iter_utf8(&url, NULL)))
			continue;
		error = error_of(product, i);
		o = bson_malloc0(sizeof *o);
		o->url = bson_strdup(bson_iter_utf8(&url, NULL));
		o->output_url = bson_strdup(slot_str(product, "output_image_urls", i));
		o->sizes = *o->output_url ? sizes_of(product, i) : NULL;
		o->error = error ? bson_strdup(error) : NULL;
		slot = tsearch(o, &p->owners, owner_cmp);
		if (!slot)
			errx(EX_OSERR, "out of memory");
	}
}

/* The owner of copy index of the product; NULL when the batch has none (nothing to do). */
static const struct owner *copy_owner(const struct pass *p, const bson_t *product, int64_t index)
{
	return owner_find(p, slot_str(product, "input_image_urls", index));
}

/* The owner of each of the product's copies is known. */
static bool owners_known(const struct pass *p, const bson_t *product)
{
	bson_iter_t it, el;

	if (bson_iter_init_find(&it, product, "copies") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &el))
		while (bson_iter_next(&el))
			if (BSON_ITER_HOLDS_INT(&el) && !copy_owner(p, product, bson_iter_as_int64(&el)))
				return false;
	return true;
}

/* The copy's image_sizes entry: its owner's, made "how": "copied". */
static bson_t *copied_sizes(const struct owner *o)
{
	bson_t *sizes = bson_new();
	bson_iter_t it;

	if (o->sizes && bson_iter_init(&it, o->sizes))
		while (bson_iter_next(&it))
			if (strcmp(bson_iter_key(&it), "how") != 0)
				bson_append_iter(sizes, NULL, 0, &it);
	BSON_APPEND_UTF8(sizes, "how", "copied");
	return sizes;
}

/* Appends to the array arr, of *n elements, the entry {index, url, error}. */
static void append_error(bson_t *arr, uint32_t *n, int64_t index, const char *url,
			 const char *error)
{
	char idx[16];
	const char *key;
	bson_t entry;

	bson_uint32_to_string((*n)++, &key, idx, sizeof idx);
	bson_append_document_begin(arr, key, -1, &entry);
	BSON_APPEND_INT32(&entry, "index", (int32_t)index);
	BSON_APPEND_UTF8(&entry, "url", url);
	BSON_APPEND_UTF8(&entry, "error", error);
	bson_append_document_end(arr, &entry);
}

/* The product's errors once its copies with an owner hold their owners' errors: the
 * entries of its other slots as they are, then one for each failed copy. */
static bson_t *copied_errors(const struct pass *p, const bson_t *product)
{
	bson_t *errors = bson_new(), entry;
	bson_iter_t it, el, url;
	uint32_t n = 0;

	if (bson_iter_init_find(&it, product, "errors") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &el))
		while (rec_next_doc(&el, &entry)) {
			int64_t index = rec_int(&entry, "index", -1);
			char idx[16];
			const char *key;

			if (is_copy(product, index) && copy_owner(p, product, index))
				continue;
			bson_uint32_to_string(n++, &key, idx, sizeof idx);
			BSON_APPEND_DOCUMENT(errors, key, &entry);
		}
	if (bson_iter_init_find(&it, product, "input_image_urls") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &url))
		for (int64_t i = 0; bson_iter_next(&url); i++) {
			const struct owner *o = is_copy(product, i) ? copy_owner(p, product, i) : NULL;

			if (o && o->error && BSON_ITER_HOLDS_UTF8(&url))
				append_error(errors, &n, i, bson_iter_utf8(&url, NULL), o->error);
		}
	return errors;
}

/* Adds to set and unset what copy index needs to hold its owner's outcome (its errors
 * entry is copied_errors'); returns whether the slot differs from its owner's. */
static bool copy_slot(const bson_t *product, int64_t index, const struct owner *o, bson_t *set,
		      bson_t *unset)
{
	char slot[64], sizekey[64];
	bson_t *want = *o->output_url ? copied_sizes(o) : NULL, *have = sizes_of(product, index);
	const char *error = error_of(product, index);
	bool differs = strcmp(slot_str(product, "output_image_urls", index), o->output_url) != 0 ||
		       !want != !have || (want && !bson_equal(want, have)) ||
		       !error != !o->error || (error && strcmp(error, o->error) != 0);

	snprintf(slot, sizeof slot, "output_image_urls.%lld", (long long)index);
	snprintf(sizekey, sizeof sizekey, "image_sizes.%lld", (long long)index);
	BSON_APPEND_UTF8(set, slot, o->output_url);
	if (want)
		BSON_APPEND_DOCUMENT(set, sizekey, want);
	else
		BSON_APPEND_UTF8(unset, sizekey, "");
	bson_destroy(want);
	bson_destroy(have);
	return differs;
}

/* The product's errors array as stored, or an empty one. */
static bson_t *stored_errors(const bson_t *product)
{
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;

	if (!bson_iter_init_find(&it, product, "errors") || !BSON_ITER_HOLDS_ARRAY(&it))
		return bson_new();
	bson_iter_array(&it, &len, &data);
	return bson_new_from_data(data, len);
}

/* Queues the update that gives the product's copies their owners' outcomes, unless they
 * hold them already; false with err when it is malformed. */
static bool queue_copies(struct pass *p, const bson_t *product, bson_error_t *err)
{
	bson_t set = BSON_INITIALIZER, unset = BSON_INITIALIZER, *errors = copied_errors(p, product);
	bson_t *before = stored_errors(product), *update, *sel;
	bson_iter_t it, el, id;
	bool changed = !bson_equal(errors, before), ok = true;

	if (bson_iter_init_find(&it, product, "copies") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &el))
		while (bson_iter_next(&el)) {
			int64_t index = BSON_ITER_HOLDS_INT(&el) ? bson_iter_as_int64(&el) : -1;
			const struct owner *o = index >= 0 ? copy_owner(p, product, index) : NULL;

			p->copies++;
			if (o && copy_slot(product, index, o, &set, &unset)) {
				p->updated++;
				changed = true;
			}
		}
	if (changed && bson_iter_init_find(&id, product, "_id") && BSON_ITER_HOLDS_UTF8(&id)) {
		BSON_APPEND_ARRAY(&set, "errors", errors);
		BSON_APPEND_DATE_TIME(&set, "updatedAt", db_now());
		update = BCON_NEW("$set", BCON_DOCUMENT(&set));
		if (!bson_empty(&unset))
			BSON_APPEND_DOCUMENT(update, "$unset", &unset);
		sel = BCON_NEW("_id", BCON_UTF8(bson_iter_utf8(&id, NULL)));
		/* update_many on an _id: FerretDB 1.24 on SQLite deadlocks on many update_ones */
		ok = mongoc_bulk_operation_update_many_with_opts(p->bulk, sel, update, NULL, err);
		p->queued++;
		bson_destroy(sel);
		bson_destroy(update);
	}
	bson_destroy(&set);
	bson_destroy(&unset);
	bson_destroy(errors);
	bson_destroy(before);
	return ok;
}

/* Writes the queued updates, if any, and starts a new bulk. */
static bool flush_bulk(struct pass *p, bson_error_t *err)
{
	bson_t reply;
	bool ok = true;

	if (p->queued) {
		ok = mongoc_bulk_operation_execute(p->bulk, &reply, err) != 0;
		bson_destroy(&reply);
	}
	mongoc_bulk_operation_destroy(p->bulk);
	p->bulk = mongoc_collection_create_bulk_operation_with_opts(db.products, NULL);
	p->queued = 0;
	return ok;
}

static void pass_free(struct pass *p)
{
	tdestroy(p->owners, owner_free);
	for (size_t i = 0; i < p->ndeferred; i++)
		bson_destroy(p->deferred[i]);
	bson_free(p->deferred);
	mongoc_bulk_operation_destroy(p->bulk);
	*p = (struct pass){ 0 };
}

/* The product's copies, now or (their owner not yet read) after the pass. */
static bool take_product(struct pass *p, const bson_t *product, bson_error_t *err)
{
	learn_owners(p, product);
	if (!bson_has_field(product, "copies"))
		return true;
	if (!owners_known(p, product)) {
		p->deferred = bson_realloc(p->deferred, sizeof *p->deferred * (p->ndeferred + 1));
		p->deferred[p->ndeferred++] = bson_copy(product);
		return true;
	}
	return queue_copies(p, product, err) && (p->queued < BULK_MAX || flush_bulk(p, err));
}

/* Whether the batch has a product with copies: most have none, and then need no pass. */
static bool has_copies(const char *id, bool *some, bson_error_t *err)
{
	bson_t *filter = BCON_NEW("batch_id", BCON_UTF8(id), "copies", "{", "$exists", BCON_BOOL(true), "}");
	bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
	int64_t n = mongoc_collection_count_documents(db.products, filter, opts, NULL, NULL, err);

	*some = n > 0;
	bson_destroy(filter);
	bson_destroy(opts);
	return n >= 0;
}

/* One pass over the batch's products, then the products deferred; false with err when
 * MongoDB fails (the pass is then run again from the start: it sets what it set). */
static bool copy_batch(const char *id, struct pass *p, bson_error_t *err)
{
	static const char *const fields[] = {
		"input_image_urls", "output_image_urls", "errors", "image_sizes", "copies", NULL,
	};
	mongoc_cursor_t *c;
	const bson_t *product;
	bool ok = true, some;

	if (!has_copies(id, &some, err))
		return false;
	if (!some)
		return true;
	p->bulk = mongoc_collection_create_bulk_operation_with_opts(db.products, NULL);
	/* in serial order, a copy mostly comes after its owner and waits for nothing */
	c = db_products_find(&db, id, -1, fields, true, 0);
	while (ok && mongoc_cursor_next(c, &product))
		ok = take_product(p, product, err);
	ok = ok && !mongoc_cursor_error(c, err);
	mongoc_cursor_destroy(c);
	for (size_t i = 0; ok && i < p->ndeferred; i++)
		ok = queue_copies(p, p->deferred[i], err) && (p->queued < BULK_MAX || flush_bulk(p, err));
	return ok && flush_bulk(p, err);
}

/* copies ID: sets every copy slot of the batch to its owner's outcome; prints
 * {"batch_id", "copies" (copy slots), "updated" (those that differed)}. */
void copies_command(int argc, char **argv, const char *usage)
{
	static const struct option none[] = { { NULL, 0, NULL, 0 } };
	struct retry r = { 0 };
	struct pass p = { 0 };
	bson_error_t error;
	bson_t *out;

	optind = 0;
	while (cli_getopt(argc, argv, "", none, usage) != -1)
		;
	if (argc - optind != 1)
		cli_usage_error(usage, "copies wants one batch ID");
	connect_db();
	while (!copy_batch(argv[optind], &p, &error)) {
		pass_free(&p);
		retry_or_exit(&r, &error, NULL);
	}
	out = BCON_NEW("batch_id", BCON_UTF8(argv[optind]), "copies", BCON_INT64(p.copies),
		       "updated", BCON_INT64(p.updated));
	pass_free(&p);
	if (ndjson_write(stdout, out) < 0)
		err(EX_IOERR, "stdout");
	bson_destroy(out);
}
