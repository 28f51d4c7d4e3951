/* The only writer of markup in imgpipe.cgi, as cgit's html.c is: the page frame (head,
 * style, header, the security headers), markup from the program's own constants, escaped
 * text, and images.  The pages themselves are the ui-*.c files (ui.h), which call these.
 * One page is written at a time (a CGI answers one request), into memory, since a response
 * states its length; html_page_send() sends it. */
#ifndef IMGPIPE_HTML_H
#define IMGPIPE_HTML_H

/* Starts a page titled title; refresh makes the browser reload it every few seconds.
 * Returns 0, or -1 when it has answered 500 itself (then write nothing more). */
int html_page_open(const char *title, int refresh);
/* Ends the page and sends it with status and extra header lines (or NULL). */
void html_page_send(int status, const char *extra);

/* Markup as it is: only the program's own constants, never a string from outside. */
void html(const char *markup);
/* Markup with numbers filled in; the same rule for any %s. */
void htmlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Any other string (NULL as nothing), escaped for HTML text and quoted attribute values. */
void html_txt(const char *text);
/* An http(s) URL as an image that links to itself, loaded once the browser scrolls to it,
 * alt its alternative text (a constant); any other URL (javascript:, data:, ...) as plain
 * text. */
void html_image_link(const char *url, const char *alt);
/* An http(s) URL as a link of the class, labelled label (constants); any other URL as
 * plain text. */
void html_link(const char *url, const char *class, const char *label);

#endif
