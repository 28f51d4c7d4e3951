/* REDIS_URL (redis://[:PASSWORD@]HOST[:PORT][/DB]), read for the job queue (queue.h). */
#ifndef IMGPIPE_REDISURL_H
#define IMGPIPE_REDISURL_H

struct redis_url {
	char host[256];
	int port;               /* default 6379 */
	int db;                 /* default 0 */
	char password[256];     /* empty when none */
};

/* Parses url with libcurl's URL parser.  Returns 0, or -1 when it is not a redis URL. */
int redis_url_parse(const char *url, struct redis_url *out);

#endif
