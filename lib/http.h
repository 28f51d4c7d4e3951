/* Small pieces of libcurl use shared by the HTTP clients (S3, webhooks). */
#ifndef IMGPIPE_HTTP_H
#define IMGPIPE_HTTP_H

#include <curl/curl.h>

/* Appends "name: value" to *list.  Returns 0, or -1 when out of memory. */
int http_header_add(struct curl_slist **list, const char *name, const char *value);

#endif
