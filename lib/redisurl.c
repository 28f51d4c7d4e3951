/* REDIS_URL parsing, by libcurl's URL API. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "redisurl.h"

/* Copies URL part `what` into buf; a missing part leaves buf empty.  Returns -1 when
 * the part is there but does not fit. */
static int url_part(CURLU *u, CURLUPart what, char *buf, size_t len)
{
	char *part = NULL;
	int rc = 0;

	buf[0] = '\0';
	if (curl_url_get(u, what, &part, CURLU_URLDECODE) != CURLUE_OK)
		return 0;
	if (strlen(part) >= len)
		rc = -1;
	else
		strcpy(buf, part);
	curl_free(part);
	return rc;
}

int redis_url_parse(const char *url, struct redis_url *out)
{
	CURLU *u = curl_url();
	char scheme[16], port[16], path[32], *end;
	int rc = -1;

	memset(out, 0, sizeof *out);
	if (!u || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
		goto done;
	if (url_part(u, CURLUPART_SCHEME, scheme, sizeof scheme) || strcmp(scheme, "redis") != 0 ||
	    url_part(u, CURLUPART_HOST, out->host, sizeof out->host) || !out->host[0] ||
	    url_part(u, CURLUPART_PASSWORD, out->password, sizeof out->password) ||
	    url_part(u, CURLUPART_PORT, port, sizeof port) ||
	    url_part(u, CURLUPART_PATH, path, sizeof path))
		goto done;
	out->port = port[0] ? (int)strtol(port, NULL, 10) : 6379;
	if (path[0] && strcmp(path, "/") != 0) {
		out->db = (int)strtol(path + 1, &end, 10);
		if (*end || out->db < 0)
			goto done;
	}
	rc = 0;
done:
	curl_url_cleanup(u);
	return rc;
}
