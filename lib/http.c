/* Small pieces of libcurl use shared by the HTTP clients. */
#include <bson/bson.h>

#include "http.h"

int http_header_add(struct curl_slist **list, const char *name, const char *value)
{
	char *line = bson_strdup_printf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(*list, line);

	bson_free(line);
	if (!l)
		return -1;
	*list = l;
	return 0;
}
