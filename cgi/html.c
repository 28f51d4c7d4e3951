/* Markup (html.h), written as cgit's html.c writes it: constants go out as they are,
 * every other string through html_txt, and only http(s) URLs become links or images. */
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

#include "cgi.h"
#include "html.h"

#define REFRESH_SECONDS 2

/* Who has a batch id sees the batch, so the images a page shows (on other sites) are not
 * told its address; same-origin rather than no-referrer, under which a browser sends
 * "Origin: null" with the upload form, which access.c cannot tell from another site's.
 * And the page runs no script and posts only to its own site. */
static const char security_headers[] =
	"Referrer-Policy: same-origin\n"
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
	"form.action{background:none;border:0;padding:0;margin:0 0 1em}\n"
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
	".error{color:#8a1c1c}.pending{color:#6b4a00}\n"
	"nav.pages{margin:.8em 0}nav.pages a{margin:0 .6em}\n";

/* The page being written; f is NULL when none is. */
static struct {
	FILE *f;
	char *buf;
	size_t len;
} page;

static void out_of_memory(void)
{
	static const char msg[] = "out of memory\n";

	warnx("500: out of memory");
	reply(500, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
}

void html(const char *markup)
{
	if (page.f)
		fputs(markup, page.f);
}

void htmlf(const char *fmt, ...)
{
	va_list ap;

	if (!page.f)
		return;
	va_start(ap, fmt);
	vfprintf(page.f, fmt, ap);
	va_end(ap);
}

void html_txt(const char *s)
{
	for (; page.f && s && *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", page.f); break;
		case '<': fputs("&lt;", page.f); break;
		case '>': fputs("&gt;", page.f); break;
		case '"': fputs("&quot;", page.f); break;
		case '\'': fputs("&#39;", page.f); break;
		default: putc(*s, page.f); break;
		}
}

/* Whether url may become a link or an image: never javascript:, data: and the like. */
static int linkable(const char *url)
{
	return url && (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8));
}

void html_link(const char *url, const char *class, const char *label)
{
	if (!linkable(url)) {
		html_txt(url);
		return;
	}
	html("<a class=\"");
	html_txt(class);
	html("\" href=\"");
	html_txt(url);
	html("\" title=\"");
	html_txt(url);
	html("\">");
	html_txt(label);
	html("</a>");
}

void html_image_link(const char *url, const char *alt)
{
	if (!linkable(url)) {
		html_txt(url);
		return;
	}
	/* lazy: a browser fetches only the images it scrolls to */
	html("<a href=\"");
	html_txt(url);
	html("\"><img loading=\"lazy\" src=\"");
	html_txt(url);
	html("\" alt=\"");
	html_txt(alt);
	html("\" title=\"");
	html_txt(url);
	html("\"></a>");
}

int html_page_open(const char *title, int refresh)
{
	page.buf = NULL;
	page.len = 0;
	if (!(page.f = open_memstream(&page.buf, &page.len))) {
		out_of_memory();
		return -1;
	}
	html("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
	if (refresh)
		htmlf("<meta http-equiv=\"refresh\" content=\"%d\">\n", REFRESH_SECONDS);
	html("<title>");
	html_txt(title);
	htmlf(" - imgpipe</title>\n<style>\n%s</style>\n</head>\n<body>\n"
	      "<header><a href=\"/\">imgpipe</a></header>\n<main>\n", style);
	return 0;
}

void html_page_send(int status, const char *extra)
{
	char *headers;

	if (!page.f)
		return;
	html("</main>\n</body>\n</html>\n");
	if (ferror(page.f) | fclose(page.f)) {
		out_of_memory();
	} else {
		headers = bson_strdup_printf("%s%s", security_headers, extra ? extra : "");
		reply(status, "text/html; charset=utf-8", headers, page.buf, page.len);
		bson_free(headers);
	}
	page.f = NULL;
	free(page.buf);
	page.buf = NULL;
}
