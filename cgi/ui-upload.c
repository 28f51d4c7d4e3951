/* The answer to a browser's upload: 303 See Other to the batch's status page, with a
 * page that links there for a client that does not follow it. */
#include "html.h"
#include "ui.h"

void ui_see_other(const char *location)
{
	char *extra;

	if (html_page_open("Uploaded", 0))
		return;
	html("<p>Uploaded: the batch is at <a href=\"");
	html_txt(location);
	html("\">");
	html_txt(location);
	html("</a>.</p>\n");
	extra = bson_strdup_printf("Location: %s\n", location);
	html_page_send(303, extra);
	bson_free(extra);
}
