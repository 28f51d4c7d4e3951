/* A batch's products in serial order, from any place in it, for the status page and the
 * output CSV (db.h).
 *
 * csvsplit --rank gives each valid row its place in serial order, and dbrecord stores it
 * as rank, with rank_group = rank / DB_RANK_GROUP.  A ranked batch is read one group at
 * a time, {batch_id, rank_group} by equality, so a page costs a group or two whatever the
 * size of the batch and of the database: FerretDB 1.x pushes only equalities down to its
 * store and sorts and skips in memory (a page read by skip over the batch sorted cost
 * 6 s at 10,000 products).  On MongoDB the index {batch_id, rank_group, rank} serves each
 * group.  A batch dbrecord marked unranked (products recorded without a rank, by hand)
 * is read sorted, with skip, at the cost of the batch. */
#include "db.h"

/* Appends to opts the projection of the fields named, and of extra unless it is NULL. */
static void append_projection(bson_t *opts, const char *const *fields, const char *extra)
{
	bson_t projection;

	bson_append_document_begin(opts, "projection", -1, &projection);
	for (const char *const *f = fields; *f; f++)
		BSON_APPEND_INT32(&projection, *f, 1);
	if (extra)
		BSON_APPEND_INT32(&projection, extra, 1);
	bson_append_document_end(opts, &projection);
}

mongoc_cursor_t *db_products_find(struct db *d, const char *id, int64_t chunk,
				  const char *const *fields, bool sorted, int64_t skip)
{
	bson_t *filter = BCON_NEW("batch_id", BCON_UTF8(id));
	bson_t *opts = BCON_NEW("batchSize", BCON_INT32(DB_PAGE_LIMIT_MAX));
	mongoc_cursor_t *c;

	if (chunk >= 0)         /* by the index {batch_id, chunk, serial_no} */
		BSON_APPEND_INT64(filter, "chunk", chunk);
	if (sorted)
		BCON_APPEND(opts, "sort", "{", "serial_no", BCON_INT32(1), "}");
	append_projection(opts, fields, NULL);
	if (skip > 0)
		BSON_APPEND_INT64(opts, "skip", skip);
	c = mongoc_collection_find_with_opts(d->products, filter, opts, NULL);
	bson_destroy(filter);
	bson_destroy(opts);
	return c;
}

/* The cursor over one rank group of the batch, in rank order, with the fields and rank. */
static mongoc_cursor_t *find_group(struct db *d, const char *id, int64_t group,
				   const char *const *fields)
{
	bson_t *filter = BCON_NEW("batch_id", BCON_UTF8(id), "rank_group", BCON_INT64(group));
	bson_t *opts = BCON_NEW("sort", "{", "rank", BCON_INT32(1), "}",
				"batchSize", BCON_INT32(DB_RANK_GROUP));
	mongoc_cursor_t *c;

	append_projection(opts, fields, "rank");
	c = mongoc_collection_find_with_opts(d->products, filter, opts, NULL);
	bson_destroy(filter);
	bson_destroy(opts);
	return c;
}

void db_products_open(struct db_products *r, struct db *d, const char *id,
		      const bson_t *batch, const char *const *fields, int64_t offset)
{
	bson_iter_t it;
	bool unranked = bson_iter_init_find(&it, batch, "unranked") && bson_iter_as_bool(&it);

	*r = (struct db_products){ .d = d, .id = id, .fields = fields, .offset = offset,
				   .ranked = !unranked, .group = offset / DB_RANK_GROUP };
	r->c = r->ranked ? find_group(d, id, r->group, fields) :
			   db_products_find(d, id, -1, fields, true, offset);
}

bool db_products_next(struct db_products *r, const bson_t **doc)
{
	for (;;) {
		while (mongoc_cursor_next(r->c, doc)) {
			r->group_read = true;
			if (!r->ranked || rec_int(*doc, "rank", -1) >= r->offset)
				return true;
		}
		/* the groups of a batch whose rows are all recorded are dense: the first empty
		 * one is past its end */
		if (!r->ranked || mongoc_cursor_error(r->c, NULL) || !r->group_read)
			return false;
		mongoc_cursor_destroy(r->c);
		r->c = find_group(r->d, r->id, ++r->group, r->fields);
		r->group_read = false;
	}
}

bool db_products_error(struct db_products *r, bson_error_t *err)
{
	return mongoc_cursor_error(r->c, err);
}

void db_products_close(struct db_products *r)
{
	mongoc_cursor_destroy(r->c);
	r->c = NULL;
}
