/* csvin: the product CSV read as a stream on libcsv (see csvin.h).
 *
 * Lines end in LF (or CRLF): libcsv is told that only LF ends a row and that CR is a
 * space, so a row can only end at the end of a line.  Input is fed to libcsv one line
 * (or 4 KiB of a long line) at a time; a row begins on the first line that holds more
 * than spaces while no row is open, which gives each row the line on which it starts. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <csv.h>
#include <curl/curl.h>
#include <glib.h>

#include "csvin.h"

#define FEED_PIECE 4096   /* most bytes fed to libcsv between two cap_field calls */
#define WHY_MAX 1024      /* longest reason for an invalid row */
#define QUOTE_MAX 100     /* longest value quoted in a reason */

enum col { COL_SERIAL, COL_NAME, COL_URLS, NCOLS, COL_OTHER = NCOLS };

static const char *const col_title[NCOLS] = { "S. No.", "Product Name", "Input Image Urls" };
static const char expected[] = "expected the columns 'S. No.', 'Product Name' and "
	"'Input Image Urls' in any order (case, spaces and punctuation ignored)";

/* Header names, reduced to lower-case letters and digits, and their column. */
static const struct { const char *name; enum col col; } aliases[] = {
	{ "sno", COL_SERIAL }, { "serialno", COL_SERIAL }, { "serialnumber", COL_SERIAL },
	{ "productname", COL_NAME }, { "inputimageurls", COL_URLS },
};

/* The serial numbers of valid rows with their lines, in an open-addressing table of
 * 12-byte slots (serial 0: free).  Lines are therefore kept below 2^32. */
struct serials { int64_t *serial; uint32_t *line; size_t cap, n; };

/* The required fields of the row being read. */
enum state { FIELD_MISSING, FIELD_KEPT, FIELD_BAD };

struct csvin {
	struct csv_parser csv;
	struct csvin_limits lim;
	csvin_row_fn fn;
	void *arg;
	CURLU *url;
	int status;                /* CSVIN_OK until the parse must stop */
	char error[512];           /* why, for CSVIN_EINPUT */

	size_t bom;                /* bytes of a leading UTF-8 BOM matched so far */
	int bom_done;
	uint64_t line;             /* the line being fed */
	int in_row;                /* a row has begun and not ended */
	uint64_t row_line;         /* the line on which it began */
	size_t field;              /* its next field's column, from 0 */
	int overflow;              /* libcsv's copy of the field under way was cut */

	int header_done;
	size_t ncols;              /* header columns */
	size_t col[NCOLS];         /* column of each required field */
	int urls_last;             /* extra fields of a row are more URLs */

	uint64_t rows;             /* data rows ended */
	enum state state[NCOLS];
	size_t serial_at, name_at; /* offsets in text */
	char *text;                /* the row's kept values, NUL-terminated */
	size_t text_len, text_cap;
	size_t *url_at;            /* offsets in text of the first max_urls URLs */
	const char **urls;
	size_t nurls;              /* URLs in the row, kept or not */
	char why[WHY_MAX];
	size_t why_len;
	int why_full;
	struct serials seen;
};

/* ---- reasons ---- */

/* Appends a clause to the row's reason, "; " between clauses.  A clause that does not
 * fit is replaced by " ..." once, so the reason is never cut inside a character. */
__attribute__((format(printf, 2, 3)))
static void why_add(struct csvin *c, const char *fmt, ...)
{
	char clause[WHY_MAX];
	va_list ap;
	int n;

	if (c->why_full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(clause, sizeof clause, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n + 2 + 5 < sizeof c->why - c->why_len) {
		c->why_len += (size_t)snprintf(c->why + c->why_len, sizeof c->why - c->why_len,
					       "%s%s", c->why_len ? "; " : "", clause);
	} else {
		c->why_len += (size_t)snprintf(c->why + c->why_len, sizeof c->why - c->why_len, " ...");
		c->why_full = 1;
	}
}

/* Copies s (valid UTF-8) into a buffer of QUOTE_MAX + 4 bytes for quoting in a reason,
 * shortened with "..." at a character boundary when longer than QUOTE_MAX. */
static const char *quote(char *buf, const char *s)
{
	size_t n = strlen(s);

	if (n <= QUOTE_MAX)
		return memcpy(buf, s, n + 1);
	n = QUOTE_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;   /* back to the first byte of a character */
	memcpy(buf, s, n);
	memcpy(buf + n, "...", 4);
	return buf;
}

/* "column 3 (Product Name)" or "column 7". */
static const char *col_name(char *buf, size_t len, size_t col, enum col role)
{
	if (role == COL_OTHER)
		snprintf(buf, len, "column %zu", col + 1);
	else
		snprintf(buf, len, "column %zu (%s)", col + 1, col_title[role]);
	return buf;
}

/* What is wrong with a field as text: NULL when it is UTF-8 without NUL.  glib's
 * validator accepts exactly what bson_utf8_validate does (checked over every sequence of
 * up to 4 bytes) at a fraction of its cost, and it refuses NUL bytes too. */
static const char *text_flaw(const char *s, size_t len)
{
	if (g_utf8_validate_len(s, len, NULL))
		return NULL;
	return memchr(s, '\0', len) ? "contains a NUL byte" : "is not valid UTF-8";
}

/* ---- the set of serial numbers ---- */

static size_t serial_hash(int64_t serial, size_t cap)
{
	uint64_t x = (uint64_t)serial;   /* splitmix64's finaliser: serials are often 1, 2, 3... */

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (size_t)x & (cap - 1);
}

/* The slot that holds serial, or the free slot where it belongs. */
static size_t serials_slot(const struct serials *s, int64_t serial)
{
	size_t i = serial_hash(serial, s->cap);

	while (s->serial[i] && s->serial[i] != serial)
		i = (i + 1) & (s->cap - 1);
	return i;
}

/* The line of the valid row that had serial, or 0. */
static uint64_t serials_find(const struct serials *s, int64_t serial)
{
	return s->cap ? s->line[serials_slot(s, serial)] : 0;
}

static void serials_put(struct serials *s, int64_t serial, uint32_t line)
{
	size_t i = serials_slot(s, serial);

	s->serial[i] = serial;
	s->line[i] = line;
}

/* Adds serial; the table doubles at 80% full, so 200,000 rows take 3 MiB. */
static void serials_add(struct serials *s, int64_t serial, uint64_t line)
{
	if ((s->n + 1) * 5 > s->cap * 4) {
		struct serials old = *s;

		s->cap = old.cap ? old.cap * 2 : 1024;
		s->serial = bson_malloc0(s->cap * sizeof *s->serial);
		s->line = bson_malloc0(s->cap * sizeof *s->line);
		for (size_t i = 0; i < old.cap; i++)
			if (old.serial[i])
				serials_put(s, old.serial[i], old.line[i]);
		bson_free(old.serial);
		bson_free(old.line);
	}
	serials_put(s, serial, (uint32_t)line);
	s->n++;
}

/* ---- the row being read ---- */

static int is_blank(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Narrows [*s, *end) to its text without surrounding blanks. */
static void trim(const char **s, const char **end)
{
	while (*s < *end && is_blank((unsigned char)**s))
		(*s)++;
	while (*end > *s && is_blank((unsigned char)(*end)[-1]))
		(*end)--;
}

/* Keeps a copy of s in the row's text and returns its offset. */
static size_t keep(struct csvin *c, const char *s, size_t len)
{
	size_t at = c->text_len;

	if (c->text_cap - c->text_len < len + 1) {
		while (c->text_cap - c->text_len < len + 1)
			c->text_cap = c->text_cap ? c->text_cap * 2 : 256;
		c->text = bson_realloc(c->text, c->text_cap);
	}
	memcpy(c->text + at, s, len);
	c->text[at + len] = '\0';
	c->text_len += len + 1;
	return at;
}

static void keep_trimmed(struct csvin *c, const char *s, size_t len, size_t *at)
{
	const char *end = s + len;

	trim(&s, &end);
	*at = keep(c, s, (size_t)(end - s));
}

/* Splits a URL field at its commas; the first max_urls URLs are kept, all are counted. */
static void split_urls(struct csvin *c, const char *s, size_t len)
{
	const char *end = s + len;

	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *from = s, *to = comma ? comma : end;

		trim(&from, &to);
		if (to > from && c->nurls++ < c->lim.max_urls)
			c->url_at[c->nurls - 1] = keep(c, from, (size_t)(to - from));
		s = comma ? comma + 1 : end;
	}
}

/* The role of column col in a data row. */
static enum col role_of(const struct csvin *c, size_t col)
{
	for (int r = 0; r < NCOLS; r++)
		if (c->col[r] == col)
			return (enum col)r;
	return col >= c->ncols && c->urls_last ? COL_URLS : COL_OTHER;
}

/* A field of a data row: every field must fit the limit and be UTF-8 without NUL; the
 * required ones are kept for row_end. */
static void row_field(struct csvin *c, size_t col, const char *s, size_t len)
{
	enum col role = role_of(c, col);
	const char *flaw;
	char name[64];

	if (c->rows >= c->lim.max_rows || (role != COL_OTHER && c->state[role] == FIELD_BAD))
		return;
	if (c->overflow || len > c->lim.max_field_bytes)
		why_add(c, "%s is longer than %zu bytes (--max-field-bytes)",
			col_name(name, sizeof name, col, role), c->lim.max_field_bytes);
	else if ((flaw = text_flaw(s, len)))
		why_add(c, "%s %s", col_name(name, sizeof name, col, role), flaw);
	else {
		if (role == COL_SERIAL)
			keep_trimmed(c, s, len, &c->serial_at);
		else if (role == COL_NAME)
			keep_trimmed(c, s, len, &c->name_at);
		else if (role == COL_URLS)
			split_urls(c, s, len);
		if (role != COL_OTHER)
			c->state[role] = FIELD_KEPT;
		return;
	}
	if (role != COL_OTHER)
		c->state[role] = FIELD_BAD;
}

/* Parses the serial number, or says why it is not one.  Returns 0 when it is. */
static int parse_serial(struct csvin *c, int64_t *serial)
{
	const char *s = c->state[COL_SERIAL] == FIELD_KEPT ? c->text + c->serial_at : "";
	char q[QUOTE_MAX + 4];
	int64_t n = 0;

	if (!*s) {
		if (c->state[COL_SERIAL] != FIELD_BAD)
			why_add(c, "serial number is empty");
		return -1;
	}
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || n > (INT64_MAX - (*p - '0')) / 10) {
			why_add(c, *p >= '0' && *p <= '9' ?
				"serial number '%s' is too large" :
				"serial number '%s' is not a positive integer", quote(q, s));
			return -1;
		}
		n = n * 10 + (*p - '0');
	}
	if (n == 0) {
		why_add(c, "serial number '%s' is not a positive integer", quote(q, s));
		return -1;
	}
	*serial = n;
	return 0;
}

/* Says why url is not an absolute http(s) URL with a host; returns 0 when it is one.
 * curl parses it once.  Its scheme is read from url itself: when curl takes url as
 * absolute, the scheme is the text before the first ':', so comparing that prefix without
 * case saves copying the scheme out of the handle.
 * Two spellings curl accepts still name no host.  curl, as browsers do, allows one to
 * three slashes after the scheme and takes the host from what follows ("http:///x.jpg"
 * fetches from host x.jpg), where RFC 3986 reads no authority or an empty one.  And a host
 * of dots alone ("." or "%2e", which curl decodes) has only empty labels. */
static int check_url(struct csvin *c, const char *url, char *why, size_t len)
{
	char q[QUOTE_MAX + 4], qhost[QUOTE_MAX + 4], *host = NULL;
	size_t scheme = strcspn(url, ":");
	size_t slashes = url[scheme] ? strspn(url + scheme + 1, "/") : 0;
	CURLUcode rc;
	int bad = 1;

	/* cleared first: curl resolves a URL set on a handle holding one against it */
	rc = curl_url_set(c->url, CURLUPART_URL, NULL, 0);
	if (!rc)
		rc = curl_url_set(c->url, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (rc)
		snprintf(why, len, "image URL '%s' is not an absolute URL (%s)",
			 quote(q, url), curl_url_strerror(rc));
	else if (strncasecmp(url, "http:", 5) != 0 && strncasecmp(url, "https:", 6) != 0)
		snprintf(why, len, "image URL '%s' is not http or https", quote(q, url));
	else if (curl_url_get(c->url, CURLUPART_HOST, &host, 0) || !*host)
		snprintf(why, len, "image URL '%s' has no host", quote(q, url));
	else if (slashes != 2)
		snprintf(why, len, "image URL '%s' has no host (%zu slash%s after '%.*s:', not 2)",
			 quote(q, url), slashes, slashes == 1 ? "" : "es", (int)scheme, url);
	else if (!host[strspn(host, ".")])
		snprintf(why, len, "image URL '%s' has no host ('%s' is not a host name)",
			 quote(q, url), quote(qhost, host));
	else
		bad = 0;
	curl_free(host);
	return bad;
}

/* Checks the kept URLs: names the first bad one and counts the others. */
static void check_urls(struct csvin *c)
{
	size_t kept = c->nurls < c->lim.max_urls ? c->nurls : c->lim.max_urls, bad = 0;
	char first[WHY_MAX], why[WHY_MAX];

	if (c->state[COL_URLS] == FIELD_BAD)
		return;
	if (c->nurls == 0) {
		why_add(c, "no image URL");
		return;
	}
	for (size_t i = 0; i < kept; i++) {
		c->urls[i] = c->text + c->url_at[i];
		if (check_url(c, c->urls[i], bad ? why : first, sizeof first))
			bad++;
	}
	if (bad == 1)
		why_add(c, "%s", first);
	else if (bad > 1)
		why_add(c, "%s (and %zu more bad image URL%s)", first, bad - 1, bad > 2 ? "s" : "");
	if (c->nurls > c->lim.max_urls)
		why_add(c, "%zu image URLs, over the limit of %zu (--max-urls)",
			c->nurls, c->lim.max_urls);
}

/* The end of a data row: validates what was kept and hands the row to the callback. */
static void row_end(struct csvin *c)
{
	struct csvin_row row = { .line = c->row_line, .rank = -1 };
	uint64_t first;

	if (++c->rows > c->lim.max_rows) {
		why_add(c, "row %llu is over the limit of %llu rows (--max-rows)",
			(unsigned long long)c->rows, (unsigned long long)c->lim.max_rows);
	} else {
		if (parse_serial(c, &row.serial_no) == 0 &&
		    (first = serials_find(&c->seen, row.serial_no)))
			why_add(c, "serial number %lld was already used on line %llu",
				(long long)row.serial_no, (unsigned long long)first);
		if (c->state[COL_NAME] != FIELD_BAD &&
		    (c->state[COL_NAME] == FIELD_MISSING || !c->text[c->name_at]))
			why_add(c, "product name is empty");
		check_urls(c);
	}
	if (c->why_len) {
		row.error = c->why;
	} else {
		serials_add(&c->seen, row.serial_no, row.line);
		row.product_name = c->text + c->name_at;
		row.urls = c->urls;
		row.nurls = c->nurls;
	}
	if (c->fn(&row, c->arg))
		c->status = CSVIN_ESTOP;
}

/* ---- the header ---- */

__attribute__((format(printf, 2, 3)))
static void fail(struct csvin *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->error, sizeof c->error, fmt, ap);
	va_end(ap);
	c->status = CSVIN_EINPUT;
}

/* The required column a header name stands for, or COL_OTHER. */
static enum col header_role(const char *s, size_t len)
{
	char name[32];
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if ((ch < 'a' || ch > 'z') && (ch < '0' || ch > '9'))
			continue;
		if (n == sizeof name - 1)
			return COL_OTHER;
		name[n++] = ch;
	}
	name[n] = '\0';
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
		if (strcmp(name, aliases[i].name) == 0)
			return aliases[i].col;
	return COL_OTHER;
}

static void header_field(struct csvin *c, size_t col, const char *s, size_t len)
{
	enum col role;

	if (c->overflow || len > c->lim.max_field_bytes)
		fail(c, "line %llu: header column %zu is longer than %zu bytes; %s",
		     (unsigned long long)c->row_line, col + 1, c->lim.max_field_bytes, expected);
	else if (text_flaw(s, len))
		fail(c, "the input is not UTF-8 text (line %llu, the header); %s",
		     (unsigned long long)c->row_line, expected);
	else if ((role = header_role(s, len)) != COL_OTHER) {
		if (c->col[role] != SIZE_MAX)
			fail(c, "the header (line %llu) has two '%s' columns (%zu and %zu); %s",
			     (unsigned long long)c->row_line, col_title[role], c->col[role] + 1,
			     col + 1, expected);
		c->col[role] = col;
	}
	c->ncols = col + 1;
}

static void header_end(struct csvin *c)
{
	char missing[128] = "";
	size_t n = 0, len = 0;

	for (int r = 0; r < NCOLS; r++)
		if (c->col[r] == SIZE_MAX)
			n++;
	for (int r = 0, i = 0; r < NCOLS; r++)
		if (c->col[r] == SIZE_MAX)
			len += (size_t)snprintf(missing + len, sizeof missing - len, "%s'%s'",
				i++ == 0 ? "" : i == (int)n ? " and " : ", ", col_title[r]);
	if (n)
		fail(c, "the header (line %llu) lacks the column%s %s; %s",
		     (unsigned long long)c->row_line, n > 1 ? "s" : "", missing, expected);
	c->urls_last = c->col[COL_URLS] == c->ncols - 1;
	c->header_done = 1;
}

/* ---- libcsv ---- */

static void on_field(void *s, size_t len, void *arg)
{
	struct csvin *c = arg;
	size_t col = c->field++;

	if (c->status == CSVIN_OK) {
		if (c->header_done)
			row_field(c, col, s, len);
		else
			header_field(c, col, s, len);
	}
	c->overflow = 0;
}

static void on_row(int term, void *arg)
{
	struct csvin *c = arg;

	(void)term;
	if (c->status == CSVIN_OK) {
		if (c->header_done)
			row_end(c);
		else
			header_end(c);
	}
	c->in_row = 0;
	c->field = 0;
	c->text_len = 0;
	c->nurls = 0;
	c->why_len = 0;
	c->why[0] = '\0';
	c->why_full = 0;
	for (int r = 0; r < NCOLS; r++)
		c->state[r] = FIELD_MISSING;
}

/* Only LF ends a row, so that rows end where lines do; CR before it is a space. */
static int csv_term(unsigned char ch)
{
	return ch == '\n';
}

static int csv_space(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* libcsv holds a whole field and has no limit of its own.  Its parser struct is public
 * (csv.h), so we bound what it holds here, between two calls, as the field would be
 * judged when it ends.  The field holds entry_pos bytes, of which the last `spaces` (and
 * a closing quote before them) may yet be trimmed away:
 * - more than max + 1 trailing spaces: the surplus goes, since either they are trimmed
 *   or what follows them makes the field too long anyway;
 * - more than max bytes besides those: the field is too long; what it holds goes but for
 *   the bytes libcsv may still take back, and on_field is told. */
static void cap_field(struct csvin *c)
{
	struct csv_parser *p = &c->csv;
	size_t max = c->lim.max_field_bytes, keep;

	if (p->spaces > max + 1) {
		p->entry_pos -= p->spaces - (max + 1);
		p->spaces = max + 1;
	}
	if (p->entry_pos <= max + p->spaces + 1)
		return;
	keep = p->spaces + 1;
	memmove(p->entry_buf, p->entry_buf + p->entry_pos - keep, keep);
	p->entry_pos = keep;
	c->overflow = 1;
}

/* Feeds libcsv up to the end of one line, or FEED_PIECE bytes of it. */
static size_t feed_piece(struct csvin *c, const char *s, size_t len)
{
	const char *nl;

	if (len > FEED_PIECE)
		len = FEED_PIECE;
	if ((nl = memchr(s, '\n', len)))
		len = (size_t)(nl - s) + 1;
	if (!c->in_row) {
		for (size_t i = 0; i < len; i++) {
			if (!is_blank((unsigned char)s[i])) {
				c->in_row = 1;
				c->row_line = c->line;
				break;
			}
		}
	}
	if (csv_parse(&c->csv, s, len, on_field, on_row, c) != len && c->status == CSVIN_OK)
		fail(c, "line %llu: %s", (unsigned long long)c->line, csv_strerror(csv_error(&c->csv)));
	cap_field(c);
	if (nl && ++c->line > UINT32_MAX && c->status == CSVIN_OK)
		fail(c, "the input has more than %lu lines", (unsigned long)UINT32_MAX);
	return len;
}

static void feed_all(struct csvin *c, const char *s, size_t len)
{
	while (len > 0 && c->status == CSVIN_OK) {
		size_t n = feed_piece(c, s, len);
		s += n;
		len -= n;
	}
}

/* ---- the interface ---- */

struct csvin *csvin_new(const struct csvin_limits *limits, csvin_row_fn fn, void *arg)
{
	static const struct csvin_limits defaults = {
		CSVIN_MAX_FIELD_BYTES, CSVIN_MAX_URLS, CSVIN_MAX_ROWS
	};
	struct csvin *c = bson_malloc0(sizeof *c);

	c->lim = limits ? *limits : defaults;
	if (c->lim.max_field_bytes < 16)
		c->lim.max_field_bytes = 16;
	c->fn = fn;
	c->arg = arg;
	c->line = 1;
	for (int r = 0; r < NCOLS; r++)
		c->col[r] = SIZE_MAX;
	c->url_at = bson_malloc((c->lim.max_urls + 1) * sizeof *c->url_at);
	c->urls = bson_malloc((c->lim.max_urls + 1) * sizeof *c->urls);
	if (csv_init(&c->csv, 0) != 0 || !(c->url = curl_url())) {
		csvin_free(c);
		return NULL;
	}
	csv_set_term_func(&c->csv, csv_term);
	csv_set_space_func(&c->csv, csv_space);
	return c;
}

/* A UTF-8 BOM may open the input: it is dropped even when it comes in pieces. */
int csvin_feed(struct csvin *c, const void *buf, size_t len)
{
	static const char bom[] = "\xEF\xBB\xBF";
	const char *s = buf;

	while (!c->bom_done && len > 0 && c->status == CSVIN_OK) {
		if (*s == bom[c->bom]) {
			s++, len--;
			c->bom_done = ++c->bom == 3;
		} else {
			feed_all(c, bom, c->bom);   /* the start of a BOM, but not one */
			c->bom_done = 1;
		}
	}
	feed_all(c, s, len);
	return c->status;
}

int csvin_finish(struct csvin *c)
{
	if (!c->bom_done) {
		feed_all(c, "\xEF\xBB\xBF", c->bom);
		c->bom_done = 1;
	}
	if (c->status == CSVIN_OK && csv_fini(&c->csv, on_field, on_row, c) != 0)
		fail(c, "line %llu: %s", (unsigned long long)c->line, csv_strerror(csv_error(&c->csv)));
	if (c->status == CSVIN_OK && !c->header_done)
		fail(c, "the input is empty; %s", expected);
	return c->status;
}

const char *csvin_error(const struct csvin *c)
{
	return c->error;
}

void csvin_free(struct csvin *c)
{
	if (!c)
		return;
	csv_free(&c->csv);
	curl_url_cleanup(c->url);
	bson_free(c->seen.serial);
	bson_free(c->seen.line);
	bson_free(c->text);
	bson_free(c->url_at);
	bson_free(c->urls);
	bson_free(c);
}

int csvin_record(const struct csvin_row *row, const char *batch_id, bson_t *out)
{
	bool ok = BSON_APPEND_INT64(out, "line", (int64_t)row->line);

	if (row->error) {
		ok = ok && BSON_APPEND_UTF8(out, "error", row->error);
	} else {
		bson_t urls;
		char key[16];
		const char *k;

		ok = ok && BSON_APPEND_INT64(out, "serial_no", row->serial_no) &&
		     BSON_APPEND_UTF8(out, "product_name", row->product_name) &&
		     BSON_APPEND_ARRAY_BEGIN(out, "input_image_urls", &urls);
		for (size_t i = 0; ok && i < row->nurls; i++) {
			bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
			ok = bson_append_utf8(&urls, k, -1, row->urls[i], -1);
		}
		ok = ok && bson_append_array_end(out, &urls);
		if (ok && row->rank >= 0)
			ok = BSON_APPEND_INT64(out, "rank", row->rank);
	}
	if (ok && batch_id)
		ok = BSON_APPEND_UTF8(out, "batch_id", batch_id);
	return ok ? 0 : -1;
}

/* ---- a whole CSV in memory ---- */

/* Says which line of buf is not UTF-8 text.  Returns 0 when all of it is. */
static int check_text(const char *buf, size_t len, char *why, size_t whylen)
{
	const char *end = buf + len;
	unsigned long line = 1;

	for (const char *s = buf; s < end; line++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
		const char *flaw = text_flaw(s, n);

		if (flaw) {
			snprintf(why, whylen, "the input is not UTF-8 text (line %lu %s)", line, flaw);
			return -1;
		}
		s += n + 1;
	}
	return 0;
}

/* What csvin_check counts: the data rows, and the images of the valid ones. */
struct tally {
	uint64_t rows, images;
};

static int count_row(const struct csvin_row *row, void *arg)
{
	struct tally *t = arg;

	t->rows++;
	if (!row->error)
		t->images += row->nurls;
	return 0;
}

int csvin_check(const char *buf, size_t len, uint64_t *images, char *why, size_t whylen)
{
	struct tally t = { 0, 0 };
	struct csvin *c;
	int rc;

	if (check_text(buf, len, why, whylen))
		return -1;
	if (!(c = csvin_new(NULL, count_row, &t))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	rc = csvin_feed(c, buf, len);
	if (rc == CSVIN_OK)
		rc = csvin_finish(c);
	if (rc == CSVIN_EINPUT)
		snprintf(why, whylen, "%s", csvin_error(c));
	else if (t.rows == 0)
		snprintf(why, whylen, "the CSV has a header but no product rows");
	csvin_free(c);
	*images = t.images;
	return rc == CSVIN_OK && t.rows > 0 ? 0 : -1;
}
