/* The error page: the status code and the precise message, and the way back. */
#include "cgi.h"
#include "html.h"
#include "ui.h"

void ui_error(int status, const char *extra, const char *message)
{
	char title[64];

	snprintf(title, sizeof title, "%d %s", status, http_reason(status));
	if (html_page_open(title, 0))
		return;
	html("<h1>");
	html_txt(title);
	html("</h1>\n<p class=\"error\">");
	html_txt(message);
	html("</p>\n<p><a href=\"/\">Upload a CSV</a></p>\n");
	html_page_send(status, extra);
}
