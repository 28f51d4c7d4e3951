/* S3 requests over libcurl with its built-in SigV4 signing (CURLOPT_AWS_SIGV4).
 * Path-style by default (S3_ENDPOINT/BUCKET/KEY); S3_VIRTUAL_HOST=1 selects
 * BUCKET.host style for AWS.  One handle keeps its connection alive between requests.
 * Functions return 0, or an exit code of docs/design.md with one clear line in s3->error:
 * EX_DATAERR (no such key / bad local file or key), EX_UNAVAILABLE (refused: credentials,
 * bucket; store unreachable after retries), EX_TEMPFAIL (5xx or network error after
 * retries), EX_IOERR (s3_get could not write to out). */
#ifndef IMGPIPE_S3_H
#define IMGPIPE_S3_H

#include <curl/curl.h>
#include "imgpipe.h"

struct s3 {
	const struct config *cfg;
	CURL *curl;
	int retries;        /* extra attempts on 5xx and network errors; s3_open sets S3_RETRIES */
	int virtual_host;   /* S3_VIRTUAL_HOST=1 */
	char error[512];
};

#define S3_RETRIES 4

/* Exits EX_USAGE naming the variable when S3_ENDPOINT or credentials are missing. */
void s3_open(struct s3 *s, const struct config *cfg);
void s3_close(struct s3 *s);
/* public_read adds x-amz-acl: public-read.  content_type and cache_control (the
 * Cache-Control header) may be NULL. */
int s3_put_file(struct s3 *s, const char *path, const char *key, const char *content_type,
		const char *cache_control, int public_read);
int s3_put_buffer(struct s3 *s, const void *data, size_t len, const char *key,
		  const char *content_type, int public_read);
/* Streams the object to out. */
int s3_get(struct s3 *s, const char *key, FILE *out);
int s3_delete(struct s3 *s, const char *key);
/* Whether the object is there: 0 when it is, EX_DATAERR when it is not ("no such key"). */
int s3_head(struct s3 *s, const char *key);
/* HEAD of the bucket (it exists and the credentials open it), within timeout_ms, retried
 * s->retries times like any request: for health checks. */
int s3_head_bucket(struct s3 *s, long timeout_ms);
/* S3_PUBLIC_URL/KEY; caller frees with bson_free. */
char *s3_public_url(const struct config *cfg, const char *key);

#endif
