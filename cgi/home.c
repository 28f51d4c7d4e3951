/* GET /: the upload form for a browser; for anyone else a small JSON index of the routes. */
#include "cgi.h"
#include "ui.h"

void home(const struct request *rq, const char *rest)
{
	bson_t *index;

	(void)rq;
	(void)rest;
	if (wants_html()) {
		ui_home();
		return;
	}
	index = BCON_NEW("name", BCON_UTF8("imgpipe"), "version", BCON_UTF8(IMGPIPE_VERSION),
			 "routes", "[", BCON_UTF8("POST /upload"), BCON_UTF8("GET /status/ID"),
			 BCON_UTF8("GET /status/ID?format=csv"), BCON_UTF8("POST /status/ID/retry"),
			 BCON_UTF8("POST /status/ID/cancel"), BCON_UTF8("GET /healthz"),
			 BCON_UTF8("GET /metrics"), "]");
	reply_json(200, NULL, index);
	bson_destroy(index);
}
