/* The status page (GET /status/ID for a browser): the status JSON of db_status(), one page
 * of products, read with libbson and rendered through html.h, refreshing itself until the
 * batch ends. */
#include <stdio.h>
#include <string.h>

#include "html.h"
#include "ui.h"

/* ---- reading the status JSON ---- */

/* The string v holds, or NULL. */
static const char *string_of(const bson_iter_t *v)
{
	return BSON_ITER_HOLDS_UTF8(v) ? bson_iter_utf8(v, NULL) : NULL;
}

/* The number v holds, or -1 (counts and sizes are never negative). */
static int64_t number_of(const bson_iter_t *v)
{
	return BSON_ITER_HOLDS_NUMBER(v) ? bson_iter_as_int64(v) : -1;
}

/* The document v holds, into *doc (which borrows its bytes); false when it holds none. */
static bool document_of(const bson_iter_t *v, bson_t *doc)
{
	uint32_t len;
	const uint8_t *data;

	if (!BSON_ITER_HOLDS_DOCUMENT(v))
		return false;
	bson_iter_document(v, &len, &data);
	return bson_init_static(doc, data, len);
}

/* The value at the dotted path ("message", "progress.rows_done"), into v. */
static bool find(const bson_t *doc, const char *path, bson_iter_t *v)
{
	bson_iter_t it;

	return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, v);
}

/* The string at the path, or NULL. */
static const char *text(const bson_t *doc, const char *path)
{
	bson_iter_t v;

	return find(doc, path, &v) ? string_of(&v) : NULL;
}

/* The number at the path, or -1. */
static int64_t number(const bson_t *doc, const char *path)
{
	bson_iter_t v;

	return find(doc, path, &v) ? number_of(&v) : -1;
}

/* Starts it on the elements of doc's array key; false when there is none. */
static bool children(const bson_t *doc, const char *key, bson_iter_t *it)
{
	bson_iter_t arr;

	return bson_iter_init_find(&arr, doc, key) && BSON_ITER_HOLDS_ARRAY(&arr) &&
	       bson_iter_recurse(&arr, it);
}

/* Moves it to element i of doc's array key; false when there is none. */
static bool nth(const bson_t *doc, const char *key, uint32_t i, bson_iter_t *it)
{
	if (!children(doc, key, it))
		return false;
	while (bson_iter_next(it))
		if (i-- == 0)
			return true;
	return false;
}

/* Moves it to its next document element, read into *doc; false at the end. */
static bool next_doc(bson_iter_t *it, bson_t *doc)
{
	while (bson_iter_next(it))
		if (document_of(it, doc))
			return true;
	return false;
}

/* ---- the status page ---- */

/* A size for people: 512 B, 38.2 kB, 1.4 MB. */
static void human_size(int64_t n)
{
	if (n < 1000)
		htmlf("%lld B", (long long)n);
	else if (n < 1000000)
		htmlf("%.1f kB", (double)n / 1e3);
	else
		htmlf("%.1f MB", (double)n / 1e6);
}

static void saving(int64_t in, int64_t out)
{
	double pct = 100.0 * (double)(in - out) / (double)in;

	htmlf(pct >= 0 ? "%.0f%% smaller" : "%.0f%% larger", pct >= 0 ? pct : -pct);
}

static int ended(const char *status)
{
	return status && (!strcmp(status, "completed") || !strcmp(status, "failed"));
}

/* The class that colours a status; a constant, never the status itself. */
static const char *status_class(const char *status)
{
	return !status ? "" : !strcmp(status, "in queue") ? "queued" :
	       !strcmp(status, "in progress") ? "running" : !strcmp(status, "completed") ?
	       "completed" : !strcmp(status, "failed") ? "failed" : "";
}

/* The error of the product's image i, or NULL. */
static const char *image_error(const bson_t *product, int64_t i)
{
	bson_iter_t it;
	bson_t e;

	if (children(product, "errors", &it))
		while (next_doc(&it, &e))
			if (number(&e, "index") == i)
				return text(&e, "error");
	return NULL;
}

/* An image's size under it, when known. */
static void size_line(int64_t bytes)
{
	if (bytes >= 0) {
		html("<div class=\"size\">");
		human_size(bytes);
		html("</div>");
	}
}

/* How an output was made, when not compressed now (reused from an earlier batch, copied
 * from a slot of this one with the same URL), and whether it is its source. */
static void made_line(const bson_t *size)
{
	const char *how = size ? text(size, "how") : NULL, *kept = size ? text(size, "kept") : NULL;
	bool reused = how && !strcmp(how, "reused"), copied = how && !strcmp(how, "copied");
	bool other = reused || copied;

	if (!other && !kept)
		return;
	html("<div class=\"made\">");
	if (other)
		html(reused ? "reused" : "deduplicated");
	if (kept && !strcmp(kept, "source"))
		htmlf("%skept as source (no smaller when compressed)", other ? "; " : "");
	html("</div>");
}

/* The before, after and saving cells of the product's image i: a link to the original (as
 * images, a page would have the browser fetch every full-size original on it at once) and
 * the output as a thumbnail. */
static void image_cells(const bson_t *product, uint32_t i, const char *status)
{
	bson_iter_t v;
	bson_t size;
	const char *in = nth(product, "input_image_urls", i, &v) ? string_of(&v) : NULL;
	const char *out = nth(product, "output_image_urls", i, &v) ? string_of(&v) : NULL;
	const char *error = image_error(product, i);
	bool sized = nth(product, "image_sizes", i, &v) && document_of(&v, &size);
	int64_t in_bytes = sized ? number(&size, "input_bytes") : -1;
	int64_t out_bytes = sized ? number(&size, "output_bytes") : -1;

	html("<td>");
	html_link(in, "original", "original");
	size_line(in_bytes);
	html("</td><td>");
	if (out && *out) {
		html_image_link(out, "after");
		size_line(out_bytes);
		made_line(sized ? &size : NULL);
	} else if (error) {
		html("<span class=\"error\">");
		html_txt(error);
		html("</span>");
	} else {
		html(ended(status) ? "no output" : "<span class=\"pending\">pending</span>");
	}
	html("</td><td class=\"saving\">");
	if (out && *out && in_bytes > 0 && out_bytes >= 0)
		saving(in_bytes, out_bytes);
	html("</td>");
}

/* One row an image of the product; its serial number and name span them. */
static void product_rows(const bson_t *product, const char *status)
{
	bson_iter_t it;
	uint32_t n = 0;

	if (children(product, "input_image_urls", &it))
		while (bson_iter_next(&it))
			n++;
	for (uint32_t i = 0; i < (n ? n : 1); i++) {
		html("<tr>");
		if (i == 0) {
			htmlf("<td rowspan=\"%u\">%lld</td><td rowspan=\"%u\">", n ? n : 1,
				(long long)number(product, "serial_no"), n ? n : 1);
			html_txt(text(product, "product_name"));
			html("</td>");
		}
		image_cells(product, i, status);
		html("</tr>\n");
	}
}

static void products_table(const bson_t *st)
{
	const char *status = text(st, "status");
	bson_iter_t it, first;
	bson_t product;

	if (!children(st, "products", &it) || (first = it, !bson_iter_next(&first))) {
		html(number(st, "offset") > 0 ? "<p>No products on this page.</p>\n" :
		     "<p>No products yet.</p>\n");
		return;
	}
	html("<table>\n<thead><tr><th>S. No.</th><th>Product</th><th>Before</th><th>After</th>"
	      "<th>Saving</th></tr></thead>\n<tbody>\n");
	while (next_doc(&it, &product))
		product_rows(&product, status);
	html("</tbody>\n</table>\n");
}

/* The sizes of the page's images compressed so far, and what they saved. */
static void total_sizes(const bson_t *st)
{
	int64_t in = 0, out = 0;
	bson_iter_t products, sizes;
	bson_t product, size;

	if (children(st, "products", &products))
		while (next_doc(&products, &product))
			if (children(&product, "image_sizes", &sizes))
				while (next_doc(&sizes, &size))
					if (number(&size, "input_bytes") >= 0 &&
					    number(&size, "output_bytes") >= 0) {
						in += number(&size, "input_bytes");
						out += number(&size, "output_bytes");
					}
	if (in <= 0)
		return;
	html("<p>Compressed images on this page: ");
	human_size(in);
	html(" before, ");
	human_size(out);
	html(" after, ");
	saving(in, out);
	html(".</p>\n");
}

/* A button that posts to the batch's route action ("retry", "cancel"), which answers a
 * browser with 303 back to this page. */
static void action_button(const char *id, const char *action, const char *label)
{
	html("<form class=\"action\" method=\"post\" action=\"/status/");
	html_txt(id);
	htmlf("/%s\"><button type=\"submit\">%s</button></form>\n", action, label);
}

/* Cancel while the batch runs; retry once it has ended with failures. */
static void actions(const bson_t *st)
{
	const char *status = text(st, "status"), *id = text(st, "batch_id");

	if (!ended(status))
		action_button(id, "cancel", "Cancel");
	else if (number(st, "progress.images_failed") > 0 || !strcmp(status, "failed"))
		action_button(id, "retry", "Retry the failed images");
}

/* The status, the progress bar, the counts and the links. */
static void summary(const bson_t *st)
{
	const char *status = text(st, "status"), *id = text(st, "batch_id");
	int64_t total = number(st, "progress.images_total");
	int64_t done = number(st, "progress.images_done");
	int64_t failed = number(st, "progress.images_failed");
	int pct = total > 0 ? (int)((done + failed) * 100 / total) : ended(status) ? 100 : 0;

	htmlf("<p><span class=\"status %s\">", status_class(status));
	html_txt(status ? status : "unknown");
	html("</span> ");
	html_txt(text(st, "message"));
	html("</p>\n");
	actions(st);
	htmlf("<progress max=\"100\" value=\"%d\">%d%%</progress>\n", pct, pct);
	htmlf("<p>%lld of %lld images done, %lld failed; %lld of %lld rows valid, "
		"%lld rejected.</p>\n", (long long)done, (long long)total, (long long)failed,
		(long long)number(st, "progress.rows_done"),
		(long long)number(st, "progress.rows_total"),
		(long long)number(st, "progress.rows_failed"));
	htmlf("<p>%lld compressed, %lld reused from earlier batches, %lld deduplicated; ",
		(long long)number(st, "progress.images_compressed"),
		(long long)number(st, "progress.images_reused"),
		(long long)number(st, "progress.images_deduplicated"));
	human_size(number(st, "progress.bytes_saved"));
	html(" saved.</p>\n");
	total_sizes(st);
	html("<p><a class=\"csv\" href=\"/status/");
	html_txt(id);
	html("?format=csv\">Output CSV</a> &middot; <a href=\"/status/");
	html_txt(id);
	html("?format=json\">JSON</a> &middot; created ");
	html_txt(text(st, "created_at"));
	html(", updated ");
	html_txt(text(st, "updated_at"));
	html("</p>\n");
}

/* Where this page is among the products, with links to the pages before and after it;
 * nothing when one page holds them all. */
static void pager(const bson_t *st)
{
	const char *id = text(st, "batch_id"), *next = text(st, "next");
	int64_t offset = number(st, "offset"), limit = number(st, "limit");
	int64_t total = number(st, "products_total"), shown = 0;
	bson_iter_t it;

	if (offset <= 0 && !next)
		return;
	if (children(st, "products", &it))
		while (bson_iter_next(&it))
			shown++;
	html("<nav class=\"pages\">");
	if (offset > 0) {
		html("<a rel=\"prev\" href=\"/status/");
		html_txt(id);
		htmlf("?offset=%lld&amp;limit=%lld\">&larr; previous</a>",
		      (long long)(offset > limit ? offset - limit : 0), (long long)limit);
	}
	if (shown > 0)
		htmlf("Products %lld to %lld", (long long)offset + 1, (long long)(offset + shown));
	if (shown > 0 && total >= offset + shown)
		htmlf(" of %lld", (long long)total);
	if (next) {
		html("<a rel=\"next\" href=\"");
		html_txt(next);
		html("\">next &rarr;</a>");
	}
	html("</nav>\n");
}

/* The rejected rows the batch keeps (the first IMGPIPE_MAX_ROW_ERRORS), and how many more
 * there were. */
static void row_errors(const bson_t *st)
{
	int64_t dropped = number(st, "row_errors_dropped");
	bson_iter_t it, first;
	bson_t e;
	bool any = children(st, "row_errors", &it) && (first = it, bson_iter_next(&first));

	if (!any && dropped <= 0)
		return;
	html("<h2>Rejected rows</h2>\n<ul>\n");
	while (any && next_doc(&it, &e)) {
		htmlf("<li>line %lld: <span class=\"error\">", (long long)number(&e, "line"));
		html_txt(text(&e, "error"));
		html("</span></li>\n");
	}
	if (dropped > 0)
		htmlf("<li>and %lld more</li>\n", (long long)dropped);
	html("</ul>\n");
}

void ui_status(const bson_t *st)
{
	const char *id = text(st, "batch_id"), *status = text(st, "status");
	char title[64];

	snprintf(title, sizeof title, "Batch %s", id ? id : "");
	if (html_page_open(title, !ended(status)))
		return;
	html("<h1>Batch <code>");
	html_txt(id);
	html("</code></h1>\n");
	summary(st);
	pager(st);
	products_table(st);
	row_errors(st);
	if (text(st, "webhook_url")) {
		html("<p>Webhook: <code>");
		html_txt(text(st, "webhook_url"));
		html("</code></p>\n");
	}
	html_page_send(200, NULL);
}
