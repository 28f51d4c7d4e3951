/* imgpipe.cgi: the HTTP endpoint of imgpipe, a CGI program (RFC 3875) that runs behind
 * lighttpd in the local stack, or behind any web server.  This file reads the request
 * from the CGI meta-variables and routes it on PATH_INFO, as cgit does. */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "cgi.h"

static const char usage[] =
	"usage: imgpipe.cgi [--help] [--version]\n"
	"Run by a web server as a CGI program (RFC 3875); see imgpipe.cgi(1).\n"
	"  POST /upload                 a CSV (multipart/form-data part \"file\", or text/csv);\n"
	"                               202 with the batch id\n"
	"  GET  /status/ID              the batch's status JSON, a page of products\n"
	"                               (?offset=N&limit=M: 0 and 100 by default, M at most 1000)\n"
	"  GET  /status/ID?format=csv   the batch's output CSV\n"
	"  POST /status/ID/retry        an ended batch tries its failed images again; 202\n"
	"  POST /status/ID/cancel       a queued or running batch stops, failed 'cancelled'; 202\n"
	"  GET  /healthz                200 when MongoDB, Redis and S3 answer, else 503\n"
	"  GET  /metrics                Prometheus text exposition\n"
	"  GET  /                       a JSON index of these routes\n"
	"With IMGPIPE_API_TOKENS set, every request needs one of its tokens (Authorization:\n"
	"Bearer TOKEN, or HTTP Basic with the token as the password).\n"
	"A client whose Accept header names text/html (a browser) gets web pages instead:\n"
	"GET / is an upload form, an upload answers 303 to its status page, errors are pages.\n";

/* A route's path is matched whole; a segment "ID" in it stands for any text (without a
 * '/' unless it ends the path), which goes to the handler as rest. */
struct route {
	const char *path;
	const char *method;
	void (*handler)(const struct request *, const char *);
};

static const struct route routes[] = {
	{ "/",                 "GET",  home },
	{ "/upload",           "POST", upload },
	{ "/status/ID/retry",  "POST", retry },
	{ "/status/ID/cancel", "POST", cancel },
	{ "/status/ID",        "GET",  status },
	{ "/healthz",          "GET",  healthz },
	{ "/metrics",          "GET",  metrics },
};

const char *meta(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* Browsers name text/html in Accept; curl (which sends any type) and API clients do not. */
int wants_html(void)
{
	const char *accept = meta("HTTP_ACCEPT");

	return accept && strstr(accept, "text/html") != NULL;
}

/* Whether path matches the route's path; then rest holds what its "ID" stood for. */
static int matches(const char *pattern, const char *path, char *rest, size_t restlen)
{
	const char *id = strstr(pattern, "/ID");
	size_t head, tail, len = strlen(path), n;

	rest[0] = '\0';
	if (!id)
		return strcmp(pattern, path) == 0;
	head = (size_t)(id - pattern) + 1;
	tail = strlen(id + 3);
	if (len < head + tail || strncmp(path, pattern, head) != 0 ||
	    strcmp(path + len - tail, id + 3) != 0)
		return 0;
	n = len - head - tail;
	if (n >= restlen || (tail && memchr(path + head, '/', n)))
		return 0;
	memcpy(rest, path + head, n);
	rest[n] = '\0';
	return 1;
}

static void route(const struct request *rq)
{
	char rest[512];

	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
		const struct route *r = &routes[i];

		if (!matches(r->path, rq->path, rest, sizeof rest))
			continue;
		if (strcmp(rq->method, r->method) != 0) {
			char allow[64];
			snprintf(allow, sizeof allow, "Allow: %s\n", r->method);
			reply_error(405, allow, "method %s not allowed on %s; use %s",
				    rq->method, r->path, r->method);
			return;
		}
		r->handler(rq, rest);
		return;
	}
	reply_error(404, NULL, "no such route: %s", *rq->path ? rq->path : "/");
}

int query_parse(const char *query, const char *const *names, char **values,
		char *why, size_t whylen)
{
	const char *p = query;

	for (size_t i = 0; names[i]; i++)
		values[i] = NULL;
	while (*p) {
		size_t len = strcspn(p, "&"), klen = strcspn(p, "=&");
		size_t i;

		for (i = 0; names[i]; i++)
			if (strlen(names[i]) == klen && strncmp(p, names[i], klen) == 0)
				break;
		if (!names[i] || values[i] || klen == len) {
			snprintf(why, whylen, "%s query parameter '%.*s'",
				 !names[i] ? "unknown" : values[i] ? "repeated" : "no value for",
				 (int)(klen > 64 ? 64 : klen), p);
			query_free(names, values);
			return -1;
		}
		/* curl's decoder; its handle argument is unused since curl 7.82 */
		values[i] = curl_easy_unescape(NULL, p + klen + 1, (int)(len - klen - 1), NULL);
		if (!values[i] || strlen(values[i]) == 0) {
			snprintf(why, whylen, "query parameter '%s' is empty or not decodable", names[i]);
			query_free(names, values);
			return -1;
		}
		p += len + (p[len] == '&');
	}
	return 0;
}

void query_free(const char *const *names, char **values)
{
	for (size_t i = 0; names[i]; i++) {
		curl_free(values[i]);
		values[i] = NULL;
	}
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct request rq;

	cli_common(argc, argv, usage);
	if (!meta("REQUEST_METHOD"))
		cli_usage_error(usage, "REQUEST_METHOD is not set: run me from a web server");
	config_load(&cfg);
	rq.method = meta("REQUEST_METHOD");
	rq.path = meta("PATH_INFO") ? meta("PATH_INFO") : "";
	rq.query = meta("QUERY_STRING") ? meta("QUERY_STRING") : "";
	rq.content_type = meta("CONTENT_TYPE");
	rq.content_length = meta("CONTENT_LENGTH");
	rq.cfg = &cfg;
	if (access_allow(&rq))
		route(&rq);
	config_free(&cfg);
	return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}
