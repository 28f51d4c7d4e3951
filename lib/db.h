/* MongoDB access shared by dbrecord and the CGI: collections "batches" and "products"
 * with the field names of docs/design.md.  One client per process.  Functions return 0 on
 * success, -1 on error with the reason in err; lookups return 1 when nothing is found. */
#ifndef IMGPIPE_DB_H
#define IMGPIPE_DB_H

#include <mongoc/mongoc.h>
#include "imgpipe.h"

struct db {
	mongoc_client_t *client;
	mongoc_database_t *database;       /* named by MONGODB_URI, default "imgpipe" */
	mongoc_collection_t *batches;
	mongoc_collection_t *products;
	mongoc_collection_t *sources;      /* what each source URL was made into (dbrecord) */
};

/* Connects (lazily, as libmongoc does) and checks the server answers.  Exits EX_USAGE
 * when MONGODB_URI is unset or malformed. */
int db_open(struct db *d, const struct config *cfg, bson_error_t *err);
/* The same, with every wait (server selection, connecting, each reply) bounded by
 * timeout_ms rather than libmongoc's defaults (30 s, 10 s, none): for health checks. */
int db_open_within(struct db *d, const struct config *cfg, int32_t timeout_ms, bson_error_t *err);
void db_close(struct db *d);
/* Creates the indexes the queries need on products ({batch_id, rank_group, rank} for the
 * status, {batch_id, serial_no} for an unranked batch's, {batch_id, chunk, serial_no} for
 * a chunk's images); for whoever writes products.  A no-op when they exist. */
int db_create_indexes(struct db *d, bson_error_t *err);
/* Creates the index name of collection on keys; a no-op when it exists. */
int db_create_index(struct db *d, const char *collection, const bson_t *keys, const char *name,
		    bson_error_t *err);

/* Milliseconds since the epoch: the clock of createdAt and updatedAt. */
int64_t db_now(void);

/* The four statuses of docs/design.md; NULL-terminated. */
#define DB_STATUS_COUNT 4
extern const char *const db_statuses[DB_STATUS_COUNT + 1];
int db_status_valid(const char *status);

/* Creates batch id with status, s3Key and (when not NULL) webhook_url and owner (the
 * digest of the access token that uploaded it), and force: true when force (its images
 * are all made afresh); fails if it exists. */
int db_batch_create(struct db *d, const char *id, const char *status, const char *s3key,
		    const char *webhook_url, const char *owner, bool force, bson_error_t *err);
/* 0 when batch id exists and belongs to owner, 1 when not (no such batch, or another's). */
int db_batch_owned(struct db *d, const char *id, const char *owner, bson_error_t *err);
/* Sets status and message (message may be NULL), creating the batch when missing. */
int db_batch_set_status(struct db *d, const char *id, const char *status, const char *message,
			bson_error_t *err);
int db_batch_delete(struct db *d, const char *id, bson_error_t *err);

/* What operators ask (POST /status/ID/retry and /cancel).  Each checks the batch's state
 * and changes it in one findAndModify, and returns 0 when done, 1 when there is no such
 * batch, 2 when the batch is in a state that does not allow it.
 * Retry: an ended batch goes back 'in queue' for its next ending (ending + 1), its cancel
 * request dropped; *before gets the batch as it was (when 0 is returned; destroy it), for db_batch_unretry,
 * which undoes a retry whose job could not be queued.
 * Cancel: a batch 'in queue' ends at once ('failed', the message "cancelled"; *ended is
 * set); one 'in progress' gets cancel_requested, for its process-batch to end it. */
int db_batch_retry(struct db *d, const char *id, bson_t *before, bson_error_t *err);
int db_batch_unretry(struct db *d, const char *id, const bson_t *before, bson_error_t *err);
int db_batch_cancel(struct db *d, const char *id, int *ended, bson_error_t *err);
/* The number of batches in each status: counts[i] for db_statuses[i].  One aggregation
 * over batches, whatever the number of products. */
int db_batch_counts(struct db *d, int64_t counts[], bson_error_t *err);

/* One page of a batch's products in serial order: offset products passed over, at most
 * limit shown.  GET /status/ID?offset=N&limit=M and dbrecord show --offset --limit. */
#define DB_PAGE_LIMIT 100              /* the default limit */
#define DB_PAGE_LIMIT_MAX 1000
#define DB_PAGE_OFFSET_MAX INT32_MAX   /* more products than a batch can have */
struct db_page {
	int64_t offset, limit;
};

/* The page that the strings offset and limit name (NULL: the default, 0 and 100).  Returns
 * 0, or -1 with why naming the parameter: "limit must be a whole number from 1 to 1000,
 * not '0'". */
int db_page_parse(const char *offset, const char *limit, struct db_page *page, char *why,
		  size_t whylen);

/* Fills out (initialised by the caller) with the JSON of GET /status/ID: the batch, its
 * progress counters, and the page of its products (none, nor offset, limit and next, when
 * page is NULL).  Each product also gets image_sizes, beside input_image_urls:
 * {input_bytes, output_bytes} or null.  The batch's webhook_url, ending and
 * cancel_requested are shown when it has them.  Reads the batch and one page, whatever the
 * size of the batch. */
int db_status(struct db *d, const char *id, const struct db_page *page, bson_t *out,
	      bson_error_t *err);
/* Streams the output CSV of GET /status/ID?format=csv, every product in serial order, from
 * a cursor.  Once the batch is found and the first products are read, and before the first
 * byte, calls begin(arg) when it is not NULL: a -1 after that means out was cut short. */
int db_status_csv(struct db *d, const char *id, FILE *out, void (*begin)(void *), void *arg,
		  bson_error_t *err);

/* A cursor over the batch's products (only chunk's when it is not negative), with only
 * the fields named (a NULL-terminated list), skipping the first skip.  In serial order
 * when sorted: FerretDB 1.x sorts in memory, holding every product the query matches, so
 * a reader that needs no order asks for none.  Destroy it when done. */
mongoc_cursor_t *db_products_find(struct db *d, const char *id, int64_t chunk,
				  const char *const *fields, bool sorted, int64_t skip);

/* A batch's products in serial order from the one at offset (lib/products.c): read a
 * rank group at a time, each product's "rank" (its place in serial order) and group
 * "rank_group" = rank / DB_RANK_GROUP as dbrecord stores them, so that a page costs the
 * same whatever the size of the batch; or, for a batch marked "unranked", sorted by the
 * server.  batch is the batch's document. */
#define DB_RANK_GROUP 100
struct db_products {
	struct db *d;
	const char *id;
	const char *const *fields;
	int64_t offset, group;
	bool ranked, group_read;
	mongoc_cursor_t *c;
};
void db_products_open(struct db_products *r, struct db *d, const char *id,
		      const bson_t *batch, const char *const *fields, int64_t offset);
/* The next product; false at the end or on an error (db_products_error tells which). */
bool db_products_next(struct db_products *r, const bson_t **doc);
bool db_products_error(struct db_products *r, bson_error_t *err);
void db_products_close(struct db_products *r);

#endif
