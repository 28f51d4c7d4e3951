/* Responses: a CGI header block (RFC 3875 section 6), then the body.  Every answer says
 * Cache-Control: no-store, since a batch's status changes and uploads must not be replayed. */
#include <stdarg.h>
#include <string.h>

#include "cgi.h"
#include "ui.h"

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 303: return "See Other";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

void reply_start(int status, const char *content_type, const char *extra)
{
	printf("Status: %d %s\n"
	       "Content-Type: %s\n"
	       "Cache-Control: no-store\n"
	       "X-Content-Type-Options: nosniff\n"
	       "%s\n", status, http_reason(status), content_type, extra ? extra : "");
}

void reply(int status, const char *content_type, const char *extra, const void *body, size_t len)
{
	char *headers = bson_strdup_printf("Content-Length: %zu\n%s", len, extra ? extra : "");

	reply_start(status, content_type, headers);
	bson_free(headers);
	if (len && fwrite(body, 1, len, stdout) != len)
		warn("writing the response");
}

void reply_json(int status, const char *extra, const bson_t *doc)
{
	size_t len;
	char *json = bson_as_relaxed_extended_json(doc, &len);

	if (!json) {
		reply_error(500, NULL, "the response is not representable as JSON");
		return;
	}
	json[len] = '\n';       /* over the terminating NUL: a text body ends in a newline */
	reply(status, "application/json", extra, json, len + 1);
	bson_free(json);
}

/* Answers with why (which it frees), as JSON or as a page. */
static void send_error(int status, const char *extra, char *why)
{
	bson_t doc = BSON_INITIALIZER;

	/* why may quote the client's bytes; keep the JSON valid whatever they are */
	if (!bson_utf8_validate(why, strlen(why), false)) {
		bson_free(why);
		why = bson_strdup("the request holds bytes that are not UTF-8");
	}
	if (wants_html()) {
		ui_error(status, extra, why);
	} else {
		BSON_APPEND_UTF8(&doc, "error", why);
		reply_json(status, extra, &doc);
	}
	bson_free(why);
	bson_destroy(&doc);
}

void reply_error(int status, const char *extra, const char *fmt, ...)
{
	va_list ap;
	char *why;

	va_start(ap, fmt);
	why = bson_strdupv_printf(fmt, ap);
	va_end(ap);
	if (status >= 500)
		warnx("%d: %s", status, why);
	send_error(status, extra, why);
}

void reply_unavailable(const char *backend, const char *fmt, ...)
{
	va_list ap;
	char *detail;

	va_start(ap, fmt);
	detail = bson_strdupv_printf(fmt, ap);
	va_end(ap);
	warnx("503: %s unavailable: %s", backend, detail);
	bson_free(detail);
	send_error(503, NULL, bson_strdup_printf("%s unavailable", backend));
}
