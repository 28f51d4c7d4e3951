/* The web page (html.h), written as cgit's ui-*.c are: markup goes out as it is, every
 * string from the database or the request through html_txt, and only http(s) URLs become
 * links or images.  A page is written into memory first, since a response states its
 * length, then sent with reply(). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cgi.h"
#include "html.h"

#define REFRESH_SECONDS 2

/* Who has a batch id sees the batch, so the images a page shows are not told its address;
 * and the page runs no script and posts only to its own site. */
static const char security_headers[] =
	"Referrer-Policy: no-referrer\n"
	"Content-Security-Policy: default-src 'none'; img-src http: https:; "
	"style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'\n";

static const char style[] =
	"body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1d2430;background:#f4f6f8}\n"
	"header{background:#1f3a5a;padding:.6em 1.5em}\n"
	"header a{color:#fff;font-weight:600;text-decoration:none}\n"
	"main{max-width:64em;margin:0 auto;padding:1em 1.5em 2em}\n"
	"h1{font-size:1.4em}h1 code{font-size:.8em;color:#556}\n"
	"form{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:1em 1.5em}\n"
	"label{display:block;font-weight:600}\n"
	"input[type=url]{width:100%;max-width:32em;padding:.3em}\n"
	"button{font:inherit;padding:.4em 1.4em;background:#1f3a5a;color:#fff;border:0;"
	"border-radius:4px}\n"
	".status{display:inline-block;padding:.1em .7em;border-radius:1em;font-weight:600;"
	"background:#dde3ea}\n"
	".queued,.running{background:#fdeab8;color:#6b4a00}\n"
	".completed{background:#cdebd3;color:#17561f}\n"
	".failed{background:#f7d2d2;color:#8a1c1c}\n"
	"progress{width:100%;height:1.1em}\n"
	"table{border-collapse:collapse;width:100%;background:#fff}\n"
	"th,td{border:1px solid #d5dbe1;padding:.4em .6em;text-align:left;vertical-align:top}\n"
	"th{background:#e9edf1;white-space:nowrap}.saving{white-space:nowrap}\n"
	"td img{display:block;width:160px;height:100px;object-fit:cover;background:#e9edf1}\n"
	".size{color:#556;font-size:.9em}\n"
	".error{color:#8a1c1c}.pending{color:#6b4a00}\n";

static const char home_body[] =
	"<h1>Compress product images</h1>\n"
	"<p>Upload a CSV with the columns <code>S. No.</code>, <code>Product Name</code> and\n"
	"<code>Input Image Urls</code> (one or more comma-separated http(s) URLs).\n"
	"Every image is compressed to 50% quality; the next page follows the batch.</p>\n"
	"<form method=\"post\" action=\"/upload\" enctype=\"multipart/form-data\">\n"
	"<p><label for=\"file\">CSV file</label>\n"
	"<input id=\"file\" name=\"file\" type=\"file\" accept=\".csv,text/csv\" required></p>\n"
	"<p><label for=\"webhook_url\">Webhook URL (optional)</label>\n"
	"<input id=\"webhook_url\" name=\"webhook_url\" type=\"url\" "
	"placeholder=\"https://example.com/hook\"></p>\n"
	"<p><button type=\"submit\">Upload</button></p>\n"
	"</form>\n"
	"<p>The same as an API: <code>POST /upload</code>, <code>GET /status/ID</code>, "
	"<code>GET /status/ID?format=csv</code> (see imgpipe.cgi(1)).</p>\n";

/* ---- writing ---- */

/* Writes s (NULL as nothing) as HTML text or a quoted attribute value. */
static void html_txt(FILE *f, const char *s)
{
	for (; s && *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: putc(*s, f); break;
		}
}

/* Whether url may become a link or an image: never javascript:, data: and the like. */
static int linkable(const char *url)
{
	return url && (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8));
}

/* A size for people: 512 B, 38.2 kB, 1.4 MB. */
static void html_size(FILE *f, int64_t n)
{
	if (n < 1000)
		fprintf(f, "%lld B", (long long)n);
	else if (n < 1000000)
		fprintf(f, "%.1f kB", (double)n / 1e3);
	else
		fprintf(f, "%.1f MB", (double)n / 1e6);
}

static void html_saving(FILE *f, int64_t in, int64_t out)
{
	double pct = 100.0 * (double)(in - out) / (double)in;

	fprintf(f, pct >= 0 ? "%.0f%% smaller" : "%.0f%% larger", pct >= 0 ? pct : -pct);
}

/* ---- pages ---- */

struct page {
	FILE *f;
	char *buf;
	size_t len;
};

static void out_of_memory(void)
{
	static const char msg[] = "out of memory\n";

	warnx("500: out of memory");
	reply(500, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
}

/* Starts a page titled title; refresh makes the browser reload it every few seconds.
 * Returns its stream, or NULL when it has answered 500 itself. */
static FILE *page_open(struct page *pg, const char *title, int refresh)
{
	pg->buf = NULL;
	pg->len = 0;
	if (!(pg->f = open_memstream(&pg->buf, &pg->len))) {
		out_of_memory();
		return NULL;
	}
	fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n", pg->f);
	if (refresh)
		fprintf(pg->f, "<meta http-equiv=\"refresh\" content=\"%d\">\n", REFRESH_SECONDS);
	fputs("<title>", pg->f);
	html_txt(pg->f, title);
	fprintf(pg->f, " - imgpipe</title>\n<style>\n%s</style>\n</head>\n<body>\n"
		"<header><a href=\"/\">imgpipe</a></header>\n<main>\n", style);
	return pg->f;
}

/* Ends the page and sends it with status and extra header lines (or NULL). */
static void page_send(struct page *pg, int status, const char *extra)
{
	char *headers;

	fputs("</main>\n</body>\n</html>\n", pg->f);
	if (ferror(pg->f) | fclose(pg->f)) {
		out_of_memory();
	} else {
		headers = bson_strdup_printf("%s%s", security_headers, extra ? extra : "");
		reply(status, "text/html; charset=utf-8", headers, pg->buf, pg->len);
		bson_free(headers);
	}
	free(pg->buf);
}

void html_home(void)
{
	struct page pg;
	FILE *f = page_open(&pg, "Upload a CSV", 0);

	if (!f)
		return;
	fputs(home_body, f);
	page_send(&pg, 200, NULL);
}

void html_see_other(const char *location)
{
	char *extra = bson_strdup_printf("Location: %s\n", location);
	struct page pg;
	FILE *f = page_open(&pg, "Uploaded", 0);

	if (f) {
		fputs("<p>Uploaded: the batch is at <a href=\"", f);
		html_txt(f, location);
		fputs("\">", f);
		html_txt(f, location);
		fputs("</a>.</p>\n", f);
		page_send(&pg, 303, extra);
	}
	bson_free(extra);
}

void html_error(int status, const char *extra, const char *message)
{
	char title[64];
	struct page pg;
	FILE *f;

	snprintf(title, sizeof title, "%d %s", status, http_reason(status));
	if (!(f = page_open(&pg, title, 0)))
		return;
	fputs("<h1>", f);
	html_txt(f, title);
	fputs("</h1>\n<p class=\"error\">", f);
	html_txt(f, message);
	fputs("</p>\n<p><a href=\"/\">Upload a CSV</a></p>\n", f);
	page_send(&pg, status, extra);
}

/* ---- reading the status JSON ---- */

/* The value at the dotted path that fmt makes ("progress.rows_done", "errors.0.index"). */
static bool vfind(const bson_t *doc, bson_iter_t *v, const char *fmt, va_list ap)
{
	char path[128];
	bson_iter_t it;

	vsnprintf(path, sizeof path, fmt, ap);
	return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, v);
}

/* The string at the path, or NULL. */
__attribute__((format(printf, 2, 3)))
static const char *text(const bson_t *doc, const char *fmt, ...)
{
	bson_iter_t v;
	va_list ap;
	bool found;

	va_start(ap, fmt);
	found = vfind(doc, &v, fmt, ap);
	va_end(ap);
	return found && BSON_ITER_HOLDS_UTF8(&v) ? bson_iter_utf8(&v, NULL) : NULL;
}

/* The number at the path, or -1 (counts and sizes are never negative). */
__attribute__((format(printf, 2, 3)))
static int64_t number(const bson_t *doc, const char *fmt, ...)
{
	bson_iter_t v;
	va_list ap;
	bool found;

	va_start(ap, fmt);
	found = vfind(doc, &v, fmt, ap);
	va_end(ap);
	return found && BSON_ITER_HOLDS_NUMBER(&v) ? bson_iter_as_int64(&v) : -1;
}

/* Starts it on the elements of doc's array key; false when there is none. */
static bool children(const bson_t *doc, const char *key, bson_iter_t *it)
{
	bson_iter_t arr;

	return bson_iter_init_find(&arr, doc, key) && BSON_ITER_HOLDS_ARRAY(&arr) &&
	       bson_iter_recurse(&arr, it);
}

/* Moves it to its next document element, read into *doc (which borrows its bytes). */
static bool next_doc(bson_iter_t *it, bson_t *doc)
{
	uint32_t len;
	const uint8_t *data;

	while (bson_iter_next(it))
		if (BSON_ITER_HOLDS_DOCUMENT(it)) {
			bson_iter_document(it, &len, &data);
			if (bson_init_static(doc, data, len))
				return true;
		}
	return false;
}

/* ---- the status page ---- */

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

/* An image as a thumbnail that links to it, with its size when known. */
static void thumbnail(FILE *f, const char *url, int64_t bytes, const char *alt)
{
	if (linkable(url)) {
		fputs("<a href=\"", f);
		html_txt(f, url);
		fputs("\"><img src=\"", f);
		html_txt(f, url);
		fprintf(f, "\" alt=\"%s\" title=\"", alt);
		html_txt(f, url);
		fputs("\"></a>", f);
	} else {
		html_txt(f, url);
	}
	if (bytes >= 0) {
		fputs("<div class=\"size\">", f);
		html_size(f, bytes);
		fputs("</div>", f);
	}
}

/* The before, after and saving cells of the product's image i. */
static void image_cells(FILE *f, const bson_t *product, uint32_t i, const char *status)
{
	const char *in = text(product, "input_image_urls.%u", i);
	const char *out = text(product, "output_image_urls.%u", i);
	const char *error = image_error(product, i);
	int64_t in_bytes = number(product, "image_sizes.%u.input_bytes", i);
	int64_t out_bytes = number(product, "image_sizes.%u.output_bytes", i);

	fputs("<td>", f);
	thumbnail(f, in, in_bytes, "before");
	fputs("</td><td>", f);
	if (out && *out) {
		thumbnail(f, out, out_bytes, "after");
	} else if (error) {
		fputs("<span class=\"error\">", f);
		html_txt(f, error);
		fputs("</span>", f);
	} else {
		fputs(ended(status) ? "no output" : "<span class=\"pending\">pending</span>", f);
	}
	fputs("</td><td class=\"saving\">", f);
	if (out && *out && in_bytes > 0 && out_bytes >= 0)
		html_saving(f, in_bytes, out_bytes);
	fputs("</td>", f);
}

/* One row an image of the product; its serial number and name span them. */
static void product_rows(FILE *f, const bson_t *product, const char *status)
{
	bson_iter_t it;
	uint32_t n = 0;

	if (children(product, "input_image_urls", &it))
		while (bson_iter_next(&it))
			n++;
	for (uint32_t i = 0; i < (n ? n : 1); i++) {
		fputs("<tr>", f);
		if (i == 0) {
			fprintf(f, "<td rowspan=\"%u\">%lld</td><td rowspan=\"%u\">", n ? n : 1,
				(long long)number(product, "serial_no"), n ? n : 1);
			html_txt(f, text(product, "product_name"));
			fputs("</td>", f);
		}
		image_cells(f, product, i, status);
		fputs("</tr>\n", f);
	}
}

static void products_table(FILE *f, const bson_t *st)
{
	const char *status = text(st, "status");
	bson_iter_t it, first;
	bson_t product;

	if (!children(st, "products", &it) || (first = it, !bson_iter_next(&first))) {
		fputs("<p>No products yet.</p>\n", f);
		return;
	}
	fputs("<table>\n<thead><tr><th>S. No.</th><th>Product</th><th>Before</th><th>After</th>"
	      "<th>Saving</th></tr></thead>\n<tbody>\n", f);
	while (next_doc(&it, &product))
		product_rows(f, &product, status);
	fputs("</tbody>\n</table>\n", f);
}

/* The sizes of all the images compressed so far, and what they saved. */
static void total_sizes(FILE *f, const bson_t *st)
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
	fputs("<p>Compressed images: ", f);
	html_size(f, in);
	fputs(" before, ", f);
	html_size(f, out);
	fputs(" after, ", f);
	html_saving(f, in, out);
	fputs(".</p>\n", f);
}

/* The status, the progress bar, the counts and the links. */
static void summary(FILE *f, const bson_t *st)
{
	const char *status = text(st, "status"), *id = text(st, "batch_id");
	int64_t total = number(st, "progress.images_total");
	int64_t done = number(st, "progress.images_done");
	int64_t failed = number(st, "progress.images_failed");
	int pct = total > 0 ? (int)((done + failed) * 100 / total) : ended(status) ? 100 : 0;

	fprintf(f, "<p><span class=\"status %s\">", status_class(status));
	html_txt(f, status ? status : "unknown");
	fputs("</span> ", f);
	html_txt(f, text(st, "message"));
	fprintf(f, "</p>\n<progress max=\"100\" value=\"%d\">%d%%</progress>\n", pct, pct);
	fprintf(f, "<p>%lld of %lld images done, %lld failed; %lld of %lld rows valid, "
		"%lld rejected.</p>\n", (long long)done, (long long)total, (long long)failed,
		(long long)number(st, "progress.rows_done"),
		(long long)number(st, "progress.rows_total"),
		(long long)number(st, "progress.rows_failed"));
	total_sizes(f, st);
	fputs("<p><a class=\"csv\" href=\"/status/", f);
	html_txt(f, id);
	fputs("?format=csv\">Output CSV</a> &middot; <a href=\"/status/", f);
	html_txt(f, id);
	fputs("?format=json\">JSON</a> &middot; created ", f);
	html_txt(f, text(st, "created_at"));
	fputs(", updated ", f);
	html_txt(f, text(st, "updated_at"));
	fputs("</p>\n", f);
}

static void row_errors(FILE *f, const bson_t *st)
{
	bson_iter_t it;
	bson_t e;
	int first = 1;

	if (!children(st, "row_errors", &it))
		return;
	while (next_doc(&it, &e)) {
		if (first)
			fputs("<h2>Rejected rows</h2>\n<ul>\n", f);
		first = 0;
		fprintf(f, "<li>line %lld: <span class=\"error\">", (long long)number(&e, "line"));
		html_txt(f, text(&e, "error"));
		fputs("</span></li>\n", f);
	}
	if (!first)
		fputs("</ul>\n", f);
}

void html_status(const bson_t *st)
{
	const char *id = text(st, "batch_id"), *status = text(st, "status");
	char title[64];
	struct page pg;
	FILE *f;

	snprintf(title, sizeof title, "Batch %s", id ? id : "");
	if (!(f = page_open(&pg, title, !ended(status))))
		return;
	fputs("<h1>Batch <code>", f);
	html_txt(f, id);
	fputs("</code></h1>\n", f);
	summary(f, st);
	products_table(f, st);
	row_errors(f, st);
	if (text(st, "webhook_url")) {
		fputs("<p>Webhook: <code>", f);
		html_txt(f, text(st, "webhook_url"));
		fputs("</code></p>\n", f);
	}
	page_send(&pg, 200, NULL);
}
