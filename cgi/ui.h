/* The web pages of imgpipe.cgi, for people who would rather click than curl: plain HTML
 * and a little CSS, no script.  Each is rendered by its own ui-*.c through html.h, and each
 * function writes one whole response. */
#ifndef IMGPIPE_UI_H
#define IMGPIPE_UI_H

#include <bson/bson.h>

/* GET / (ui-home.c): the upload form, which posts multipart/form-data to /upload. */
void ui_home(void);
/* GET /status/ID (ui-status.c): the status JSON of db_status() as a page that refreshes
 * itself until the batch ends. */
void ui_status(const bson_t *status);
/* After a browser's upload (ui-upload.c): 303 See Other to location, its status page. */
void ui_see_other(const char *location);
/* An error page (ui-error.c) with the status code and the message; extra as for reply(). */
void ui_error(int status, const char *extra, const char *message);

#endif
