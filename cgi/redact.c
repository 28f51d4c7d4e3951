/* What a status shows: no credentials.  A CSV or a webhook may carry URLs with a user
 * name and password in them (https://user:secret@host/); the pipeline needs them as they
 * are, but the status JSON and its page, which get pasted, shared and screenshotted,
 * show "***" in place of "user:secret".  URLs also appear inside error messages ("fetchimg: HTTP 404
 * from https://user:secret@host/a.jpg"), so every string of the status is searched, not
 * only the URL fields. */
#include <string.h>

#include "cgi.h"

/* s with the userinfo of each URL in it masked, or NULL when s has none.  A URL's
 * authority runs from its "://" to the next '/', '?', '#' or white space; its userinfo
 * ends at the authority's last '@'.  Free with bson_free. */
static char *masked(const char *s)
{
	bson_string_t *out = bson_string_new(NULL);
	const char *p = s, *sep;
	int found = 0;

	while ((sep = strstr(p, "://"))) {
		const char *authority = sep + 3;
		size_t len = strcspn(authority, "/?# \t\r\n");
		const char *at = memrchr(authority, '@', len);

		if (at) {
			bson_string_append_printf(out, "%.*s***", (int)(authority - p), p);
			p = at;
			found = 1;
		} else {
			bson_string_append_printf(out, "%.*s", (int)(authority + len - p), p);
			p = authority + len;
		}
	}
	bson_string_append(out, p);
	return bson_string_free(out, !found);
}

/* Copies the elements from it on to out, with masked() strings at every depth. */
static void copy_masked(bson_iter_t *it, bson_t *out)
{
	bson_iter_t child;
	bson_t sub;
	char *text;

	while (bson_iter_next(it)) {
		const char *key = bson_iter_key(it);

		if (BSON_ITER_HOLDS_UTF8(it) && (text = masked(bson_iter_utf8(it, NULL)))) {
			BSON_APPEND_UTF8(out, key, text);
			bson_free(text);
		} else if (BSON_ITER_HOLDS_ARRAY(it) && bson_iter_recurse(it, &child)) {
			bson_append_array_begin(out, key, -1, &sub);
			copy_masked(&child, &sub);
			bson_append_array_end(out, &sub);
		} else if (BSON_ITER_HOLDS_DOCUMENT(it) && bson_iter_recurse(it, &child)) {
			bson_append_document_begin(out, key, -1, &sub);
			copy_masked(&child, &sub);
			bson_append_document_end(out, &sub);
		} else {
			bson_append_iter(out, key, -1, it);
		}
	}
}

void redact_credentials(const bson_t *in, bson_t *out)
{
	bson_iter_t it;

	if (bson_iter_init(&it, in))
		copy_masked(&it, out);
}
