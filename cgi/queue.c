/* The job queue: one entry a batch on the Redis stream imgpipe:jobs, which the
 * dispatcher reads with its consumer group "dispatchers".  A stream rather than a list,
 * so that a job a dispatcher took but did not finish stays pending and is taken again. */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include "cgi.h"

/* A whole decimal number within [min, max]; -1 when s is not one. */
static long number(const char *s, long min, long max)
{
	char *end;
	long n;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return -1;
	n = strtol(s, &end, 10);
	return n < min || n > max ? -1 : n;
}

/* curl's URL parser splits the URL; only what a redis:// URL holds is accepted. */
int redis_url_parse(const char *url, char *host, size_t hostlen, int *port, int *db)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *h = NULL, *p = NULL, *path = NULL, *user = NULL, *query = NULL;
	int rc = -1;

	if (!u || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) || strcmp(scheme, "redis") != 0 ||
	    curl_url_get(u, CURLUPART_HOST, &h, 0) ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) ||
	    curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER ||
	    curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_NO_QUERY)
		goto out;
	*port = 6379;
	if (curl_url_get(u, CURLUPART_PORT, &p, 0) == CURLUE_OK)
		*port = (int)number(p, 1, 65535);
	*db = strcmp(path, "/") == 0 ? 0 : (int)number(path + 1, 0, 1 << 20);
	/* hiredis wants an IPv6 address without the brackets of the URL */
	if (h[0] == '[') {
		memmove(h, h + 1, strlen(h));
		h[strcspn(h, "]")] = '\0';
	}
	if (*port < 0 || *db < 0 || strlen(h) >= hostlen)
		goto out;
	strcpy(host, h);
	rc = 0;
out:
	curl_free(scheme);
	curl_free(h);
	curl_free(p);
	curl_free(path);
	curl_free(user);
	curl_free(query);
	curl_url_cleanup(u);
	return rc;
}

/* One command; 0, or -1 with Redis's or the connection's reason in why. */
static int command(redisContext *c, const char *const *argv, int argc, char *why, size_t whylen)
{
	redisReply *r = redisCommandArgv(c, argc, (const char **)argv, NULL);
	int rc = 0;

	if (!r) {
		snprintf(why, whylen, "%s", c->errstr[0] ? c->errstr : "no reply");
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(why, whylen, "%s: %s", argv[0], r->str);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

struct redisContext *queue_open(const char *redis_url, char *why, size_t whylen)
{
	const struct timeval connect_timeout = { 2, 0 }, io_timeout = { 5, 0 };
	char host[256], dbname[16];
	int port, db;
	redisContext *c;

	if (!redis_url) {
		snprintf(why, whylen, "REDIS_URL is not set");
		return NULL;
	}
	if (redis_url_parse(redis_url, host, sizeof host, &port, &db)) {
		snprintf(why, whylen, "REDIS_URL is not redis://HOST[:PORT][/DB]");
		return NULL;
	}
	c = redisConnectWithTimeout(host, port, connect_timeout);
	if (!c || c->err) {
		snprintf(why, whylen, "%s:%d: %s", host, port, c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	/* SELECT is also the round trip that shows a Redis answers there */
	snprintf(dbname, sizeof dbname, "%d", db);
	if (redisSetTimeout(c, io_timeout) != REDIS_OK ||
	    command(c, (const char *[]){ "SELECT", dbname }, 2, why, whylen)) {
		if (c->err)
			snprintf(why, whylen, "%s:%d: %s", host, port, c->errstr);
		redisFree(c);
		return NULL;
	}
	return c;
}

int queue_push(struct redisContext *q, const char *batch_id, char *why, size_t whylen)
{
	return command(q, (const char *[]){ "XADD", JOBS_STREAM, "*", "batch", batch_id }, 5,
		       why, whylen);
}

void queue_close(struct redisContext *q)
{
	redisFree(q);
}
