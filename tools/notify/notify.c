/* notify: POSTs each event record to its webhook as Standard Webhooks (standardwebhooks.com)
 * define it: signed, retried with backoff, and answered by one result record an event.
 * Each event is serialized once, so every attempt sends the same body bytes, with the same
 * webhook-id; each attempt signs its own webhook-timestamp.  Every connection follows the
 * address policy of lib/netpolicy.c. */
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "backoff.h"
#include "http.h"
#include "netpolicy.h"
#include "stage.h"

#define BACKOFF_CAP_MS 60000     /* no single wait longer than a minute */
#define MAX_HEADER_VALUE 256     /* the longest event name or webhook_id sent as a header */

static const char usage[] =
	"usage: notify [--url URL] [--attempts N] [--backoff MS] [--timeout S] < events.ndjson\n"
	"POSTs each event record as JSON to --url, else to the record's webhook_url, else to\n"
	"$WEBHOOK_URL, with the headers X-Imgpipe-Event, webhook-id, webhook-timestamp and, when\n"
	"$WEBHOOK_SECRET is set, webhook-signature: v1,BASE64 (Standard Webhooks; a secret\n"
	"whsec_BASE64 is that key, any other one its own bytes).  webhook-id is the record's\n"
	"webhook_id, else made from its batch_id and ending.  The body is the record without\n"
	"webhook_url and webhook_id.  Timeouts and non-2xx answers are retried with exponential\n"
	"backoff and jitter.  Loopback and private addresses are refused unless\n"
	"IMGPIPE_ALLOW_PRIVATE=1, cloud metadata and other internal ones always.\n"
	"Writes one result record an event: batch_id, event, delivery (the webhook-id), url,\n"
	"attempts, status_code, delivered, and error when not delivered.\n"
	"  --url URL      the webhook for every event\n"
	"  --attempts N   attempts an event, 1 to 100 (default 5)\n"
	"  --backoff MS   wait before the second attempt, doubled after each (default 500)\n"
	"  --timeout S    time limit of one attempt, in seconds (default 10)\n"
	"Exit: 0 all delivered or skipped, 64 usage, 65 a record was not an event or its\n"
	"URL cannot work (refused addresses included), 74 stdout unwritable, 75 an event was\n"
	"not delivered after its attempts.\n";

struct opts {
	const char *url;          /* --url */
	long attempts, backoff_ms, timeout_s;
	const struct config *cfg;
	unsigned char *key;       /* the signing key WEBHOOK_SECRET gives, or NULL */
	int key_len;
	CURL *curl;               /* the handle every event is sent with */
};

/* "msg_" and the hex of a SHA-256: the longest webhook-id notify makes. */
#define MADE_ID_SIZE (4 + 2 * 32 + 1)

/* One event on its way: where, what, and how it went. */
struct delivery {
	const char *event;
	const char *url;
	const char *id;           /* webhook-id */
	char made_id[MADE_ID_SIZE];
	char *body;
	size_t len;
	int attempts;
	long status;
	char error[CURL_ERROR_SIZE + 64];
};

/* The event's webhook-id, by which a receiver drops repeats: the record's webhook_id; else
 * "msg_" and the hex SHA-256 of "BATCH_ID.ENDING" (ending 0 when the record has none), the
 * same on every attempt and every rerun of that batch ending; else, with no batch_id,
 * "msg_" and 128 random bits.  Made ones are written into d->made_id. */
static const char *event_id(const bson_t *rec, struct delivery *d)
{
	const char *given = rec_str(rec, "webhook_id"), *batch = rec_str(rec, "batch_id");
	unsigned char b[32];
	size_t n = 16;

	if (given)
		return given;
	if (batch) {
		char *seed = bson_strdup_printf("%s.%lld", batch, (long long)rec_int(rec, "ending", 0));
		unsigned int len = 0;
		if (!EVP_Digest(seed, strlen(seed), b, &len, EVP_sha256(), NULL))
			errx(EX_SOFTWARE, "cannot compute SHA-256");
		bson_free(seed);
		n = len;
	} else if (getrandom(b, n, 0) != (ssize_t)n) {
		err(EX_UNAVAILABLE, "getrandom");
	}
	memcpy(d->made_id, "msg_", 4);
	hex_encode(b, n, d->made_id + 4);
	return d->made_id;
}

/* A value that can go in a header line as it is: printable ASCII, no line break. */
static int header_safe(const char *v)
{
	size_t n = 0;

	for (; v[n]; n++)
		if ((unsigned char)v[n] < 0x20 || (unsigned char)v[n] > 0x7e)
			return 0;
	return n > 0 && n <= MAX_HEADER_VALUE;
}

/* The signing key of a WEBHOOK_SECRET: the base64 after "whsec_", decoded, as Standard
 * Webhooks writes its secrets (padding may be left out, as that convention's libraries
 * allow), else the secret's own bytes.  Exits 64 when a whsec_ secret is no base64 key. */
static unsigned char *signing_key(const char *secret, int *len)
{
	static const char prefix[] = "whsec_";
	const char *b64 = secret + sizeof prefix - 1;
	size_t n = strlen(b64);
	char *padded;
	unsigned char *key;
	EVP_ENCODE_CTX *ctx;
	int part = 0, last = 0, ok;

	if (strncmp(secret, prefix, sizeof prefix - 1) != 0) {
		*len = (int)strlen(secret);
		return (unsigned char *)bson_strdup(secret);
	}
	padded = bson_strdup_printf("%s%.*s", b64, (int)((4 - n % 4) % 4), "===");
	key = bson_malloc(strlen(padded) + 1);
	if (!(ctx = EVP_ENCODE_CTX_new()))
		errx(EX_SOFTWARE, "out of memory");
	EVP_DecodeInit(ctx);
	ok = EVP_DecodeUpdate(ctx, key, &part, (const unsigned char *)padded, (int)strlen(padded)) >= 0 &&
	     EVP_DecodeFinal(ctx, key + part, &last) == 1 && part + last > 0;
	EVP_ENCODE_CTX_free(ctx);
	bson_free(padded);
	if (!ok)
		errx(EX_USAGE, "WEBHOOK_SECRET: what follows whsec_ is not a base64 key");
	*len = part + last;
	return key;
}

/* "v1," and the base64 of the longest HMAC, with its NUL. */
#define SIGNATURE_SIZE (3 + 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1)

/* The webhook-signature value for one attempt: v1, and the base64 of the HMAC-SHA256 of
 * "ID.TIMESTAMP.BODY" under the key. */
static void sign(const struct opts *o, const struct delivery *d, const char *timestamp,
		 char out[SIGNATURE_SIZE])
{
	char *content = bson_strdup_printf("%s.%s.%s", d->id, timestamp, d->body);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (!HMAC(EVP_sha256(), o->key, o->key_len, (const unsigned char *)content,
		  strlen(content), mac, &maclen))
		errx(EX_SOFTWARE, "cannot compute HMAC-SHA256");
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
	bson_free(content);
}

/* The headers of one attempt made at time now: Content-Type, the event, and Standard
 * Webhooks' id, timestamp and, with a key, signature. */
static struct curl_slist *headers(const struct opts *o, const struct delivery *d, time_t now)
{
	struct curl_slist *h = NULL;
	char timestamp[24], signature[SIGNATURE_SIZE];
	int bad = http_header_add(&h, "Content-Type", "application/json");

	snprintf(timestamp, sizeof timestamp, "%lld", (long long)now);
	bad |= http_header_add(&h, "X-Imgpipe-Event", d->event);
	bad |= http_header_add(&h, "webhook-id", d->id);
	bad |= http_header_add(&h, "webhook-timestamp", timestamp);
	bad |= http_header_add(&h, "Expect", "");
	bad |= http_header_add(&h, "User-Agent", "imgpipe-notify/" IMGPIPE_VERSION);
	if (o->key) {
		sign(o, d, timestamp, signature);
		bad |= http_header_add(&h, "webhook-signature", signature);
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

/* One POST, whose every connection the guard checks; the receiver's answer body is not
 * needed. */
static CURLcode post(CURL *c, const struct opts *o, const struct delivery *d,
		     struct curl_slist *h, struct netguard *guard, char *errbuf)
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
	bad |= netguard_attach(c, guard);
	return bad ? CURLE_FAILED_INIT : curl_easy_perform(c);
}

/* A URL that no attempt can fix. */
static int hopeless(CURLcode cc)
{
	return cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ||
	       cc == CURLE_FAILED_INIT;
}

/* Posts until a 2xx answer or the attempts run out.  Returns EX_OK when delivered,
 * EX_TEMPFAIL when the attempts ran out, EX_DATAERR for a URL no attempt can fix: a bad
 * one, or one whose addresses the policy refuses. */
static int deliver(CURL *c, const struct opts *o, struct delivery *d)
{
	struct netguard guard = { .allow_private = o->cfg->allow_private };
	char errbuf[CURL_ERROR_SIZE], why[CURL_ERROR_SIZE];
	int refused = 0;
	CURLcode cc;

	for (d->attempts = 1;; d->attempts++) {
		struct curl_slist *h = headers(o, d, time(NULL));

		d->status = 0;
		cc = post(c, o, d, h, &guard, errbuf);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d->status);
		curl_slist_free_all(h);     /* the next attempt sets its own before it starts */
		if (cc == CURLE_OK && d->status / 100 == 2)
			break;
		refused = netguard_error(&guard, c, cc, why, sizeof why);
		if (refused || hopeless(cc) ||
		    !backoff_retry(o->backoff_ms, BACKOFF_CAP_MS, d->attempts, (int)o->attempts))
			break;
	}
	curl_easy_reset(c);     /* drops its pointers to the headers, the body and errbuf; keeps the connection */
	if (cc == CURLE_OK && d->status / 100 == 2)
		return EX_OK;
	if (refused) {
		snprintf(d->error, sizeof d->error, "%s", why);
		return EX_DATAERR;
	}
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

	d.id = event_id(rec, &d);
	d.url = o->url ? o->url : rec_str(rec, "webhook_url");
	if (!d.url)
		d.url = o->cfg->webhook_url;
	if (!d.event) {
		d.event = "";
		snprintf(d.error, sizeof d.error, "not an event record: no \"event\" string");
		stage_raise(s, EX_DATAERR);
	} else if (!header_safe(d.event) || !header_safe(d.id)) {
		snprintf(d.error, sizeof d.error, "not an event record: \"event\" and \"webhook_id\" "
			 "must be printable ASCII of at most %d characters", MAX_HEADER_VALUE);
		stage_raise(s, EX_DATAERR);
	} else if (!d.url) {
		snprintf(d.error, sizeof d.error,
			 "skipped: no webhook URL (--url, the record's webhook_url or WEBHOOK_URL)");
	} else {
		bson_copy_to_excluding_noinit(rec, &body, "webhook_url", "webhook_id", NULL);
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
	if (cfg.webhook_secret)
		o.key = signing_key(cfg.webhook_secret, &o.key_len);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(o.curl = curl_easy_init()))
		errx(EX_UNAVAILABLE, "cannot start libcurl");
	rc = stage_run(NULL, notify_one, &o);
	curl_easy_cleanup(o.curl);
	curl_global_cleanup();
	bson_free(o.key);
	config_free(&cfg);
	return rc;
}
