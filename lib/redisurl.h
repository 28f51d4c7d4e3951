/* REDIS_URL (redis://[:PASSWORD@]HOST[:PORT][/DB]) for hiredis clients. */
#ifndef IMGPIPE_REDISURL_H
#define IMGPIPE_REDISURL_H

#include <hiredis.h>

struct redis_url {
	char host[256];
	int port;               /* default 6379 */
	int db;                 /* default 0 */
	char password[256];     /* empty when none */
};

/* Parses url with libcurl's URL parser.  Returns 0, or -1 when it is not a redis URL. */
int redis_url_parse(const char *url, struct redis_url *out);
/* Sends AUTH and SELECT as the URL asks.  Returns 0, or -1 having logged why. */
int redis_url_prepare(redisContext *c, const struct redis_url *u);

#endif
