/* csvout: csvin's records (csvin.h) as NDJSON lines, encoded by json-c.
 *
 * Two records are built once, {"line", "serial_no", "product_name", "input_image_urls"},
 * with "rank" when ranked, and {"line", "error"}, each with "batch_id" last when there is
 * one, sharing the "line" value.  Each row only refills their values (json-c reuses a
 * string's buffer when the new value fits, and its printing buffer always), so a row
 * costs little more than json-c's escaping.  json-c does not check UTF-8: csvin's rows
 * are UTF-8 already.  (jansson, which does check, spends about 4 times as many
 * instructions printing.) */
#include <stdlib.h>

#include <json-c/json.h>

#include "csvin.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct csvin_writer {
	FILE *out;
	json_object *valid, *invalid;                     /* the two records */
	json_object *line, *serial, *name, *urls, *error; /* their values, held here too */
	json_object *rank;                                /* NULL when not ranked */
};

/* Adds value to obj under key, holding one more reference to it. */
static int add(json_object *obj, const char *key, json_object *value)
{
	if (json_object_object_add(obj, key, json_object_get(value)) == 0)
		return 0;
	json_object_put(value);
	return -1;
}

struct csvin_writer *csvin_writer_new(FILE *out, const char *batch_id, bool ranked)
{
	struct csvin_writer *w = calloc(1, sizeof *w);
	json_object *batch = NULL;
	int ok;

	if (!w)
		return NULL;
	w->out = out;
	w->valid = json_object_new_object();
	w->invalid = json_object_new_object();
	w->line = json_object_new_int64(0);
	w->serial = json_object_new_int64(0);
	w->name = json_object_new_string("");
	w->urls = json_object_new_array();
	w->error = json_object_new_string("");
	ok = w->valid && w->invalid && w->line && w->serial && w->name && w->urls && w->error &&
	     !add(w->valid, "line", w->line) && !add(w->valid, "serial_no", w->serial) &&
	     !add(w->valid, "product_name", w->name) &&
	     !add(w->valid, "input_image_urls", w->urls) &&
	     !add(w->invalid, "line", w->line) && !add(w->invalid, "error", w->error);
	if (ok && ranked)
		ok = (w->rank = json_object_new_int64(0)) && !add(w->valid, "rank", w->rank);
	if (ok && batch_id)
		ok = (batch = json_object_new_string(batch_id)) &&
		     !add(w->valid, "batch_id", batch) && !add(w->invalid, "batch_id", batch);
	json_object_put(batch);
	if (!ok) {
		csvin_writer_free(w);
		return NULL;
	}
	return w;
}

/* Makes urls the array of the n strings in url, reusing the strings it holds. */
static int set_urls(json_object *urls, const char *const *url, size_t n)
{
	size_t have = json_object_array_length(urls);

	if (have > n && json_object_array_del_idx(urls, n, have - n) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		json_object *s;

		if (i < have) {
			if (!json_object_set_string(json_object_array_get_idx(urls, i), url[i]))
				return -1;
		} else if (!(s = json_object_new_string(url[i])) ||
			   json_object_array_add(urls, s) != 0) {
			json_object_put(s);
			return -1;
		}
	}
	return 0;
}

int csvin_write(struct csvin_writer *w, const struct csvin_row *row)
{
	json_object *rec = row->error ? w->invalid : w->valid;
	const char *json;
	size_t len;
	int ok = json_object_set_int64(w->line, (int64_t)row->line);

	if (row->error)
		ok = ok && json_object_set_string(w->error, row->error);
	else
		ok = ok && json_object_set_int64(w->serial, row->serial_no) &&
		     json_object_set_string(w->name, row->product_name) &&
		     set_urls(w->urls, row->urls, row->nurls) == 0 &&
		     (!w->rank || json_object_set_int64(w->rank, row->rank));
	if (!ok || !(json = json_object_to_json_string_length(rec, JSON_FLAGS, &len)) ||
	    fwrite(json, 1, len, w->out) != len || putc('\n', w->out) == EOF)
		return -1;
	return 0;
}

void csvin_writer_free(struct csvin_writer *w)
{
	if (!w)
		return;
	json_object_put(w->valid);
	json_object_put(w->invalid);
	json_object_put(w->line);
	json_object_put(w->serial);
	json_object_put(w->name);
	json_object_put(w->urls);
	json_object_put(w->error);
	json_object_put(w->rank);
	free(w);
}
