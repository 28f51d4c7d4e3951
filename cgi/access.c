/* Who may ask (docs/design.md "Access").
 *
 * Tokens.  IMGPIPE_API_TOKENS names a file of access tokens, one a line of at least
 * MIN_TOKEN bytes; blank lines and lines starting with '#' are skipped.  When it is set,
 * every route but /healthz needs one of them, as "Authorization: Bearer TOKEN" or as the
 * password of HTTP Basic (any user name), which is what a browser's login box sends.  The
 * file is read on every request (a CGI starts for each), so a token added or removed
 * counts at once, and a bad file refuses every request rather than open the endpoint.
 * Tokens are compared by their SHA-256 with CRYPTO_memcmp: equal lengths, constant time.
 * The hex digest owns the batches the request makes; the token itself is never stored,
 * logged or echoed.
 *
 * Origin.  A browser attaches Basic credentials to any request to this host, a form that
 * another site's page posts here included.  So a POST whose Origin (or, without one,
 * Referer) is another origin than this endpoint's is refused; API clients send neither. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cgi.h"

#define MIN_TOKEN 32
#define MAX_AUTHORIZATION 4096          /* longer Authorization headers hold no token */
#define CHALLENGE "WWW-Authenticate: Basic realm=\"imgpipe\"\n" \
		  "WWW-Authenticate: Bearer realm=\"imgpipe\"\n"

typedef unsigned char digest[32];       /* SHA-256 */

static int sha256(const void *data, size_t len, digest out)
{
	return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) ? 0 : -1;
}

/* s without the white space around it; len is updated. */
static const char *trimmed(const char *s, size_t *len)
{
	while (*len && strchr(" \t\r\n", s[*len - 1]))
		(*len)--;
	while (*len && strchr(" \t", *s)) {
		s++;
		(*len)--;
	}
	return s;
}

/* Reads the token file at path, checking every token in it, and compares each with given
 * (when not NULL).  Returns 1 when given is one of them, 0 when not, -1 when the file is
 * unusable (the reason in why, which names the setting but never a token). */
static int token_listed(const char *path, const digest given, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0, tokens = 0;
	int found = 0, rc = 0;
	digest d;

	if (!f) {
		snprintf(why, whylen, "IMGPIPE_API_TOKENS: its file cannot be read: %s", strerror(errno));
		return -1;
	}
	while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
		size_t len = (size_t)n;
		const char *token = trimmed(line, &len);

		lineno++;
		if (len == 0 || *token == '#')
			continue;
		if (len < MIN_TOKEN) {
			snprintf(why, whylen, "IMGPIPE_API_TOKENS: line %lu of its file holds a token of "
				 "%zu bytes; a token needs at least %d", lineno, len, MIN_TOKEN);
			rc = -1;
		} else if (sha256(token, len, d)) {
			snprintf(why, whylen, "IMGPIPE_API_TOKENS: SHA-256 unavailable");
			rc = -1;
		} else {
			tokens++;
			found |= given && CRYPTO_memcmp(d, given, sizeof d) == 0;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(why, whylen, "IMGPIPE_API_TOKENS: its file cannot be read: %s", strerror(errno));
		rc = -1;
	} else if (rc == 0 && tokens == 0) {
		snprintf(why, whylen, "IMGPIPE_API_TOKENS: its file lists no token");
		rc = -1;
	}
	if (line)
		OPENSSL_cleanse(line, cap);
	free(line);
	fclose(f);
	return rc < 0 ? rc : found;
}

/* The token the Authorization header presents, into buf (size bytes): Bearer TOKEN, or
 * the password of Basic base64(user:password).  Returns its length, or -1 for none. */
static long presented_token(char *buf, size_t size)
{
	const char *auth = meta("HTTP_AUTHORIZATION"), *credentials;
	size_t len;
	int basic, n;
	char *colon;

	if (!auth || strlen(auth) > MAX_AUTHORIZATION)
		return -1;
	basic = strncasecmp(auth, "Basic ", 6) == 0;
	if (!basic && strncasecmp(auth, "Bearer ", 7) != 0)
		return -1;
	len = strlen(auth) - (basic ? 6 : 7);
	credentials = trimmed(auth + (basic ? 6 : 7), &len);
	if (!basic) {
		if (len == 0 || len >= size)
			return -1;
		memcpy(buf, credentials, len);
		return (long)len;
	}
	/* base64 of user:password; EVP_DecodeBlock counts the padding as zero bytes */
	if (len == 0 || len % 4 || len / 4 * 3 >= size)
		return -1;
	n = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)credentials, (int)len);
	if (n < 0)
		return -1;
	n -= (credentials[len - 1] == '=') + (credentials[len - 2] == '=');
	if (!(colon = memchr(buf, ':', (size_t)n)))
		return -1;
	len = (size_t)(buf + n - (colon + 1));
	memmove(buf, colon + 1, len);
	return (long)len;
}

/* Whether the request carries a listed token; then sets rq->owner.  Otherwise answers. */
static int token_valid(struct request *rq)
{
	char token[MAX_AUTHORIZATION], why[256];
	long len = presented_token(token, sizeof token);
	digest given;
	int unhashed = len >= 0 && sha256(token, (size_t)len, given), listed;

	OPENSSL_cleanse(token, sizeof token);
	if (unhashed) {
		reply_error(500, NULL, "SHA-256 unavailable");
		return 0;
	}
	listed = token_listed(rq->cfg->api_tokens, len >= 0 ? given : NULL, why, sizeof why);
	if (listed < 0)
		reply_error(500, NULL, "%s", why);
	else if (!listed)
		reply_error(401, CHALLENGE, "%s", len < 0 ? "an access token is needed: send "
			    "Authorization: Bearer TOKEN, or HTTP Basic with the token as the password" :
			    "the access token is not valid");
	if (listed <= 0)
		return 0;
	hex_encode(given, sizeof given, rq->owner_hex);
	rq->owner = rq->owner_hex;
	return 1;
}

/* The origin of url as "scheme://host:port" (the port always written) into buf; -1 when
 * url is not an absolute URL (Origin: null, for one). */
static int origin_of(const char *url, char *buf, size_t size)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int rc = -1;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		int n = snprintf(buf, size, "%s://%s:%s", scheme, host, port);
		rc = n > 0 && (size_t)n < size ? 0 : -1;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

/* Whether url is of this endpoint's origin: that of IMGPIPE_URL, or the one the request
 * itself was sent to (its scheme and Host header). */
static int own_origin(const struct request *rq, const char *url)
{
	const char *https = meta("HTTPS"), *scheme = meta("REQUEST_SCHEME"), *host = meta("HTTP_HOST");
	char theirs[512], ours[512], *self;
	int same = 0;

	if (origin_of(url, theirs, sizeof theirs))
		return 0;
	if (rq->cfg->url && origin_of(rq->cfg->url, ours, sizeof ours) == 0)
		same = strcasecmp(theirs, ours) == 0;
	if (!same && host) {
		if (!scheme)
			scheme = https && strcasecmp(https, "on") == 0 ? "https" : "http";
		self = bson_strdup_printf("%s://%s/", scheme, host);
		same = origin_of(self, ours, sizeof ours) == 0 && strcasecmp(theirs, ours) == 0;
		bson_free(self);
	}
	return same;
}

int access_allow(struct request *rq)
{
	const char *origin = meta("HTTP_ORIGIN"), *referer = meta("HTTP_REFERER");

	rq->owner = NULL;
	if (strcmp(rq->path, "/healthz") == 0)   /* open, for load balancers and monitors */
		return 1;
	if (rq->cfg->api_tokens && !token_valid(rq))
		return 0;
	if (strcmp(rq->method, "POST") == 0 && (origin || referer) &&
	    !own_origin(rq, origin ? origin : referer)) {
		reply_error(403, NULL, "a POST from another site's page is refused: its %s header "
			    "names another origin than this endpoint's", origin ? "Origin" : "Referer");
		return 0;
	}
	return 1;
}
