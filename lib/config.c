/* Configuration from the environment names of docs/design.md, with its defaults. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imgpipe.h"

/* The variable's value, or NULL when it is unset or empty. */
static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = env(name);
	return v ? v : fallback;
}

/* A positive decimal number of at most max, fallback when unset, -1 when it is neither. */
static long env_count(const char *name, long fallback, long max)
{
	const char *v = env(name);
	char *end;
	long n;

	if (!v)
		return fallback;
	errno = 0;
	n = strtol(v, &end, 10);
	return errno || *end || n < 1 || n > max ? -1 : n;
}

static char *dup_or_null(const char *s)
{
	return s ? bson_strdup(s) : NULL;
}

void config_load(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->mongodb_uri = dup_or_null(env("MONGODB_URI"));
	c->redis_url = dup_or_null(env("REDIS_URL"));
	c->s3_endpoint = dup_or_null(env("S3_ENDPOINT"));
	c->s3_bucket = bson_strdup(env_or("S3_BUCKET", "imgpipe"));
	c->aws_access_key = dup_or_null(env("AWS_ACCESS_KEY_ID"));
	c->aws_secret_key = dup_or_null(env("AWS_SECRET_ACCESS_KEY"));
	c->aws_region = bson_strdup(env_or("AWS_REGION", "us-east-1"));
	c->webhook_url = dup_or_null(env("WEBHOOK_URL"));
	c->webhook_secret = dup_or_null(env("WEBHOOK_SECRET"));
	c->home = bson_strdup(env_or("IMGPIPE_HOME", "var"));
	c->url = dup_or_null(env("IMGPIPE_URL"));
	c->api_tokens = dup_or_null(env("IMGPIPE_API_TOKENS"));
	c->max_upload = env_count("IMGPIPE_MAX_UPLOAD", 10L << 20, 1L << 30);
	c->max_images = env_count("IMGPIPE_MAX_IMAGES", 100000, 1L << 40);
	c->max_row_errors = env_count("IMGPIPE_MAX_ROW_ERRORS", CONFIG_MAX_ROW_ERRORS,
				      CONFIG_MAX_ROW_ERRORS_MAX);
	c->host_connections = env_count("IMGPIPE_HOST_CONNECTIONS", 8, 1000);
	c->webhook_retry_for = env_count("IMGPIPE_WEBHOOK_RETRY_FOR", 3600, 30L * 86400);
	c->allow_private = strcmp(env_or("IMGPIPE_ALLOW_PRIVATE", "0"), "1") == 0;
	c->force = strcmp(env_or("IMGPIPE_FORCE", "0"), "1") == 0;
	if (env("S3_PUBLIC_URL"))
		c->s3_public_url = bson_strdup(env("S3_PUBLIC_URL"));
	else if (c->s3_endpoint)
		c->s3_public_url = bson_strdup_printf("%s/%s", c->s3_endpoint, c->s3_bucket);
}

void config_free(struct config *c)
{
	const char **fields[] = {
		&c->mongodb_uri, &c->redis_url, &c->s3_endpoint, &c->s3_bucket, &c->s3_public_url,
		&c->aws_access_key, &c->aws_secret_key, &c->aws_region, &c->webhook_url,
		&c->webhook_secret, &c->home, &c->url, &c->api_tokens,
	};
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
		bson_free((char *)*fields[i]);
		*fields[i] = NULL;
	}
}

const char *config_require(const char *name, const char *value)
{
	if (!value)
		errx(EX_USAGE, "%s is not set (for the local stack: eval \"$(imgpipe stack env)\")", name);
	return value;
}
