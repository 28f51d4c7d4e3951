/* Request bodies: the Content-Type of an upload and multipart/form-data (RFC 7578),
 * both read by GMime, so no MIME parsing of our own.  GMime reads a multipart as the
 * body of a MIME part, so the request's Content-Type goes in front as its header. */
#include <stdlib.h>
#include <string.h>
#include <gmime/gmime.h>

#include "cgi.h"

/* GMime once a process: it does not take being started and stopped repeatedly. */
static void mime_init(void)
{
	static int started;

	if (!started) {
		g_mime_init();
		atexit(g_mime_shutdown);
		started = 1;
	}
}

/* Control characters would let a Content-Type smuggle header lines in front of the body. */
static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

enum body_type body_type(const char *content_type, char *why, size_t whylen)
{
	static const char accepted[] = "send multipart/form-data (part \"file\") or text/csv";
	GMimeContentType *ct;
	enum body_type t = BODY_UNSUPPORTED;

	if (!content_type) {
		snprintf(why, whylen, "no Content-Type: %s", accepted);
		return t;
	}
	if (!printable(content_type)) {
		snprintf(why, whylen, "the Content-Type holds control characters");
		return t;
	}
	mime_init();
	ct = g_mime_content_type_parse(NULL, content_type);
	if (!ct) {
		snprintf(why, whylen, "unreadable Content-Type: %s", accepted);
	} else if (g_mime_content_type_is_type(ct, "multipart", "form-data")) {
		t = BODY_FORM;
	} else if (g_mime_content_type_is_type(ct, "text", "csv")) {
		const char *cs = g_mime_content_type_get_parameter(ct, "charset");
		if (!cs || !g_ascii_strcasecmp(cs, "utf-8") || !g_ascii_strcasecmp(cs, "us-ascii"))
			t = BODY_CSV;
		else
			snprintf(why, whylen, "text/csv in charset %.64s is not supported: send UTF-8", cs);
	} else {
		snprintf(why, whylen, "unsupported Content-Type %.100s: %s", content_type, accepted);
	}
	if (ct)
		g_object_unref(ct);
	return t;
}

/* What GMime found wrong while parsing; only what loses or confuses data counts. */
struct trouble {
	int truncated;
	int no_boundary;
	const char *malformed;          /* why, for the other serious faults */
};

static void on_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer data)
{
	struct trouble *t = data;

	(void)offset;
	(void)item;
	switch (code) {
	case GMIME_WARN_TRUNCATED_MESSAGE:
	case GMIME_WARN_MALFORMED_MULTIPART:
		t->truncated = 1;
		break;
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
		t->no_boundary = 1;
		break;
	case GMIME_CRIT_INVALID_HEADER_NAME:
		t->malformed = "a part has a header line that is not a header";
		break;
	case GMIME_CRIT_CONFLICTING_HEADER:
	case GMIME_CRIT_CONFLICTING_PARAMETER:
		t->malformed = "a part has conflicting headers";
		break;
	case GMIME_CRIT_NESTING_OVERFLOW:
		t->malformed = "parts are nested too deep";
		break;
	case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
		t->malformed = "a part has neither headers nor content";
		break;
	default:                        /* e.g. UTF-8 in a filename, as browsers send */
		break;
	}
}

/* The decoded content of a leaf part, NUL-terminated. */
static char *part_content(GMimePart *part, size_t *len)
{
	GMimeDataWrapper *w = g_mime_part_get_content(part);
	GMimeStream *out = g_mime_stream_mem_new();
	GByteArray *bytes;
	char *s;

	if (w && g_mime_data_wrapper_write_to_stream(w, out) < 0)
		g_byte_array_set_size(g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out)), 0);
	bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	*len = bytes->len;
	s = bson_malloc(bytes->len + 1);
	if (bytes->len)         /* an empty array has no data at all */
		memcpy(s, bytes->data, bytes->len);
	s[bytes->len] = '\0';
	g_object_unref(out);
	return s;
}

/* Takes the parts named "file", "webhook_url" and "force"; others (a submit button) are
 * ignored. */
static int take_fields(GMimeMultipart *mp, struct form *f, char *why, size_t whylen)
{
	int n = g_mime_multipart_get_count(mp);

	for (int i = 0; i < n; i++) {
		GMimeObject *part = g_mime_multipart_get_part(mp, i);
		const char *name = g_mime_object_get_content_disposition_parameter(part, "name");
		char **field = !name ? NULL : !strcmp(name, "file") ? &f->file :
			       !strcmp(name, "webhook_url") ? &f->webhook_url :
			       !strcmp(name, "force") ? &f->force : NULL;
		size_t len;

		if (!field)
			continue;
		if (*field) {
			snprintf(why, whylen, "part \"%s\" appears twice", name);
			return -1;
		}
		if (!GMIME_IS_PART(part)) {
			snprintf(why, whylen, "part \"%s\" is itself a multipart, not a single field", name);
			return -1;
		}
		*field = part_content(GMIME_PART(part), &len);
		if (field == &f->file)
			f->file_len = len;
		else if (strlen(*field) != len) {
			snprintf(why, whylen, "part \"%s\" holds a NUL byte", name);
			return -1;
		}
	}
	if (!f->file) {
		snprintf(why, whylen, "no part named \"file\" in the multipart/form-data body");
		return -1;
	}
	return 0;
}

int form_parse(const char *content_type, const char *body, size_t len, struct form *f,
	       char *why, size_t whylen)
{
	GByteArray *msg = g_byte_array_sized_new(len + strlen(content_type) + 20);
	GMimeParserOptions *opts;
	GMimeParser *parser;
	GMimeStream *in;
	GMimeObject *obj;
	GMimeMultipart *mp;
	struct trouble t = { 0, 0, NULL };
	int rc = -1;

	memset(f, 0, sizeof *f);
	g_byte_array_append(msg, (const guint8 *)"Content-Type: ", 14);
	g_byte_array_append(msg, (const guint8 *)content_type, (guint)strlen(content_type));
	g_byte_array_append(msg, (const guint8 *)"\r\n\r\n", 4);
	g_byte_array_append(msg, (const guint8 *)body, (guint)len);

	mime_init();
	opts = g_mime_parser_options_new();
	g_mime_parser_options_set_warning_callback(opts, on_warning, &t);
	in = g_mime_stream_mem_new_with_byte_array(msg);     /* takes msg */
	parser = g_mime_parser_new_with_stream(in);
	obj = g_mime_parser_construct_part(parser, opts);

	mp = obj && GMIME_IS_MULTIPART(obj) ? GMIME_MULTIPART(obj) : NULL;
	if (t.no_boundary || !mp)
		snprintf(why, whylen, "multipart/form-data needs a boundary parameter");
	else if (g_mime_multipart_get_count(mp) == 0 && g_mime_multipart_get_prologue(mp))
		snprintf(why, whylen, "no part in the multipart/form-data body: "
			 "no line \"--%.70s\" opens one", g_mime_multipart_get_boundary(mp));
	else if (t.truncated)
		snprintf(why, whylen, "truncated multipart/form-data body: "
			 "the closing boundary \"--%.70s--\" never comes", g_mime_multipart_get_boundary(mp));
	else if (t.malformed)
		snprintf(why, whylen, "malformed multipart/form-data body: %s", t.malformed);
	else
		rc = take_fields(mp, f, why, whylen);

	if (obj)
		g_object_unref(obj);
	g_object_unref(parser);
	g_object_unref(in);
	g_mime_parser_options_free(opts);
	if (rc)
		form_free(f);
	return rc;
}

void form_free(struct form *f)
{
	bson_free(f->file);
	bson_free(f->webhook_url);
	bson_free(f->force);
	memset(f, 0, sizeof *f);
}
