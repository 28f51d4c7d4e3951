/* The web page of imgpipe.cgi, for people who would rather click than curl (html.c):
 * plain HTML and a little CSS, no script.  Each function writes one whole response. */
#ifndef IMGPIPE_HTML_H
#define IMGPIPE_HTML_H

#include <bson/bson.h>

/* GET /: the upload form, which posts multipart/form-data to /upload. */
void html_home(void);
/* GET /status/ID: the status JSON of db_status() as a page that refreshes itself until
 * the batch ends. */
void html_status(const bson_t *status);
/* 303 See Other to location, where a browser goes after its upload. */
void html_see_other(const char *location);
/* An error page with the status code and the message; extra as for reply(). */
void html_error(int status, const char *extra, const char *message);

#endif
