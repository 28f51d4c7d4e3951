/* notify: POSTs each event record to its webhook, signed, retrying with backoff, and
 * writes one result record an event.  Each event is sent as one unchanged body, so the
 * receiver can check X-Imgpipe-Signature against the exact bytes it got. */
#include <string.h>
#include <sys/random.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "backoff.h"
#include "http.h"
#include "stage.h"

#define BACKOFF_CAP_MS 60000     /* no single wait longer than a minute */

static const char usage[] =
	"usage: notify [--url URL] [--attempts N] [--backoff MS] [--timeout S] < events.ndjson\n"
	"POSTs each event record as JSON to --url, else to the record's webhook_url (which is\n"
	"left out of the body), else to $WEBHOOK_URL, with the headers X-Imgpipe-Event,\n"
	"X-Imgpipe-Delivery and, when $WEBHOOK_SECRET is set, X-Imgpipe-Signature: sha256=HMAC.\n"
	"Timeouts and non-2xx answers are retried with exponential backoff and jitter.\n"
	"Writes one result record an event: batch_id, event, delivery, url, attempts,\n"
	"status_code, delivered, and error when not delivered.\n"
	"  --url URL      the webhook for every event\n"
	"  --attempts N   attempts an event, 1 to 100 (default 5)\n"
	"  --backoff MS   wait before the second attempt, doubled after each (default 500)\n"
	"  --timeout S    time limit of one attempt, in seconds (default 10)\n"
	"Exit: 0 all delivered or skipped, 64 usage, 65 a record was not an event or its\n"
	"URL cannot work, 74 stdout unwritable, 75 an event was not delivered after its attempts.\n";

struct opts {
	const char *url;          /* --url */
	long attempts, backoff_ms, timeout_s;
	const struct config *cfg;
	CURL *curl;               /* the handle every event is sent with */
};

/* One event on its way: where, what, and how it went. */
struct delivery {
	const char *event;
	const char *url;
	char id[37];
	char *body;
	size_t len;
	int attempts;
	long status;
	char error[CURL_ERROR_SIZE + 64];
};

static void hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* A random (version 4) UUID, the same for every attempt of one event, so that the
 * receiver can drop the duplicates that retries after a lost answer make. */
static void uuid4(char out[37])
{
	unsigned char b[16];
	char h[33];

	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		err(EX_UNAVAILABLE, "getrandom");
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	hex(b, sizeof b, h);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

/* Content-Type, the event, the delivery id and, with a secret, the body's HMAC-SHA256. */
static struct curl_slist *headers(const struct delivery *d, const char *secret)
{
	struct curl_slist *h = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char sig[8 + 2 * EVP_MAX_MD_SIZE + 1] = "sha256=";
	int bad = http_header_add(&h, "Content-Type", "application/json");

	bad |= http_header_add(&h, "X-Imgpipe-Event", d->event);
	bad |= http_header_add(&h, "X-Imgpipe-Delivery", d->id);
	bad |= http_header_add(&h, "Expect", "");
	bad |= http_header_add(&h, "User-Agent", "imgpipe-notify/" IMGPIPE_VERSION);
	if (secret) {
		if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)d->body,
			  d->len, mac, &maclen))
			errx(EX_UNAVAILABLE, "cannot compute HMAC-SHA256");
		hex(mac, maclen, sig + 7);
		bad |= http_header_add(&h, "X-Imgpipe-Signature", sig);
	}
	if (bad)
		errx(EX_UNAVAILABLE, "out of memory");
	return h;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* One POST; the receiver's answer body is not needed. */
static CURLcode post(CURL *c, const struct opts *o, const struct delivery *d,
		     struct curl_slist *h, char *errbuf)
{
	int bad = 0;

	errbuf[0] = '\0';
	bad |= curl_easy_setopt(c, CURLOPT_URL, d->url);
	bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
	bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->len);
	bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT, o->timeout_s);
	bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	return bad ? CURLE_FAILED_INIT : curl_easy_perform(c);
}

/* A URL that no attempt can fix. */
static int hopeless(CURLcode cc)
{
	return cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ||
	       cc == CURLE_FAILED_INIT;
}

/* Posts until a 2xx answer or the attempts run out.  Returns EX_OK when delivered,
 * EX_TEMPFAIL when the attempts ran out, EX_DATAERR for a URL no attempt can fix. */
static int deliver(CURL *c, const struct opts *o, struct delivery *d)
{
	struct curl_slist *h = headers(d, o->cfg->webhook_secret);
	char errbuf[CURL_ERROR_SIZE], why[CURL_ERROR_SIZE];
	CURLcode cc;

	for (d->attempts = 1;; d->attempts++) {
		d->status = 0;
		cc = post(c, o, d, h, errbuf);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d->status);
		if (cc == CURLE_OK && d->status / 100 == 2)
			break;
		if (hopeless(cc) || !backoff_retry(o->backoff_ms, BACKOFF_CAP_MS, d->attempts,
						   (int)o->attempts))
			break;
	}
	curl_easy_reset(c);     /* drops its pointers to h, the body and errbuf; keeps the connection */
	curl_slist_free_all(h);
	if (cc == CURLE_OK && d->status / 100 == 2)
		return EX_OK;
	if (cc != CURLE_OK)
		snprintf(why, sizeof why, "%s", *errbuf ? errbuf : curl_easy_strerror(cc));
	else
		snprintf(why, sizeof why, "HTTP %ld", d->status);
	if (hopeless(cc)) {
		snprintf(d->error, sizeof d->error, "bad webhook URL: %s", why);
		return EX_DATAERR;
	}
	snprintf(d->error, sizeof d->error, "not delivered after %d attempt%s: %s", d->attempts,
		 d->attempts == 1 ? "" : "s", why);
	return EX_TEMPFAIL;
}

static bson_t *result(const bson_t *rec, const struct delivery *d, int delivered)
{
	bson_t *out = bson_new();
	const char *batch = rec_str(rec, "batch_id");

	if (batch)
		BSON_APPEND_UTF8(out, "batch_id", batch);
	BSON_APPEND_UTF8(out, "event", d->event);
	BSON_APPEND_UTF8(out, "delivery", d->id);
	if (d->url)
		BSON_APPEND_UTF8(out, "url", d->url);
	else
		BSON_APPEND_NULL(out, "url");
	BSON_APPEND_INT32(out, "attempts", d->attempts);
	BSON_APPEND_INT32(out, "status_code", (int32_t)d->status);
	BSON_APPEND_BOOL(out, "delivered", delivered);
	if (!delivered) {
		bson_t *failed = rec_error(out, "%s", d->error);
		bson_destroy(out);
		return failed;
	}
	return out;
}

/* Sends one event record; its result record takes its place.  An event not delivered
 * raises the exit status: 65 for a record or URL no attempt can fix, 75 when the attempts
 * ran out. */
static bson_t *notify_one(struct stage *s, const bson_t *rec, void *arg)
{
	const struct opts *o = arg;
	struct delivery d = { .event = rec_str(rec, "event") };
	bson_t body = BSON_INITIALIZER;
	bson_t *out;
	int delivered = 0, rc;

	uuid4(d.id);
	d.url = o->url ? o->url : rec_str(rec, "webhook_url");
	if (!d.url)
		d.url = o->cfg->webhook_url;
	if (!d.event) {
		d.event = "";
		snprintf(d.error, sizeof d.error, "not an event record: no \"event\" string");
		stage_raise(s, EX_DATAERR);
	} else if (!d.url) {
		snprintf(d.error, sizeof d.error,
			 "skipped: no webhook URL (--url, the record's webhook_url or WEBHOOK_URL)");
	} else {
		bson_copy_to_excluding_noinit(rec, &body, "webhook_url", NULL);
		if (!(d.body = bson_as_relaxed_extended_json(&body, &d.len)))
			errx(EX_DATAERR, "cannot serialize an event record");
		rc = deliver(o->curl, o, &d);
		delivered = rc == EX_OK;
		stage_raise(s, rc);
	}
	if (!delivered)
		warnx("%s %s: %s", d.event, rec_str(rec, "batch_id") ? rec_str(rec, "batch_id") : "",
		      d.error);
	out = result(rec, &d, delivered);
	bson_free(d.body);
	bson_destroy(&body);
	return out;
}

int main(int argc, char **argv)
{
	enum { OPT_URL = 256, OPT_ATTEMPTS, OPT_BACKOFF, OPT_TIMEOUT };
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, OPT_URL },
		{ "attempts", required_argument, NULL, OPT_ATTEMPTS },
		{ "backoff", required_argument, NULL, OPT_BACKOFF },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg;
	struct opts o = { .attempts = 5, .backoff_ms = 500, .timeout_s = 10, .cfg = &cfg };
	int c, rc;

	cli_common(argc, argv, usage);
	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (c) {
		case OPT_URL: o.url = optarg; break;
		case OPT_ATTEMPTS: o.attempts = cli_long("--attempts", optarg, 1, 100); break;
		case OPT_BACKOFF: o.backoff_ms = cli_long("--backoff", optarg, 0, BACKOFF_CAP_MS); break;
		case OPT_TIMEOUT: o.timeout_s = cli_long("--timeout", optarg, 1, 3600); break;
		}
	}
	if (optind < argc)
		cli_usage_error(usage, "unexpected argument: %s", argv[optind]);

	config_load(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(o.curl = curl_easy_init()))
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	rc = stage_run(NULL, notify_one, &o);
	curl_easy_cleanup(o.curl);
	curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
