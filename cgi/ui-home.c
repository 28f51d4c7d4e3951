/* The upload form (GET / for a browser), which posts multipart/form-data to /upload. */
#include "html.h"
#include "ui.h"

static const char home_body[] =
	"<h1>Compress product images</h1>\n"
	"<p>Upload a CSV with the columns <code>S. No.</code>, <code>Product Name</code> and\n"
	"<code>Input Image Urls</code> (one or more comma-separated http(s) URLs).\n"
	"Every image is compressed to 50% quality; the next page follows the batch.</p>\n"
	"<form method=\"post\" action=\"/upload\" enctype=\"multipart/form-data\">\n"
	"<p><label for=\"file\">CSV file</label>\n"
	"<input id=\"file\" name=\"file\" type=\"file\" accept=\".csv,text/csv\" required></p>\n"
	"<p><label for=\"webhook_url\">Webhook URL (optional)</label>\n"
	"<input id=\"webhook_url\" name=\"webhook_url\" type=\"url\" "
	"placeholder=\"https://example.com/hook\"></p>\n"
	"<p><input id=\"force\" name=\"force\" type=\"checkbox\" value=\"1\">\n"
	"<label for=\"force\">Compress every image again (do not reuse outputs of earlier batches)</label></p>\n"
	"<p><button type=\"submit\">Upload</button></p>\n"
	"</form>\n"
	"<p>The same as an API: <code>POST /upload</code>, <code>GET /status/ID</code>, "
	"<code>GET /status/ID?format=csv</code> (see imgpipe.cgi(1)).</p>\n";

void ui_home(void)
{
	if (html_page_open("Upload a CSV", 0))
		return;
	html(home_body);
	html_page_send(200, NULL);
}
