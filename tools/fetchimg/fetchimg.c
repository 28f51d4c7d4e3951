/* fetchimg: downloads the image behind each NDJSON record's "url", many at once.
 *
 * One curl multi handle runs up to --parallel transfers while stdin keeps being read, so
 * records stream through: each leaves on stdout as soon as its download ends.  Every
 * connection is checked by lib/netpolicy.c on the address actually connected, so neither
 * DNS tricks nor redirects reach loopback, private or metadata hosts; bodies are capped
 * while they stream; the type is sniffed from the first bytes, never taken from the server. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "backoff.h"
#include "format.h"
#include "netpolicy.h"
#include "stage.h"

#define MAX_REDIRECTS  5
#define SPEED_LIMIT    1024   /* bytes a second; slower than this for --speed-time aborts */
#define BACKOFF_MS     500    /* first retry's wait, doubled each time (see backoff.h) */
#define BACKOFF_MAX_MS 30000

static const char usage[] =
	"usage: fetchimg [--parallel N] [--dir DIR] [--max-bytes N] [--timeout SEC]\n"
	"                [--connect-timeout SEC] [--speed-time SEC] [--retries N]\n"
	"Reads NDJSON records on stdin; each one with a \"url\" is downloaded and written to\n"
	"stdout with \"file\", \"input_bytes\" and \"content_type\" added, or with \"error\".\n"
	"Records without \"url\" or carrying \"error\" pass through untouched.\n"
	"  --parallel N           downloads at once (default 8)\n"
	"  --dir DIR              directory for the files (default: the current one)\n"
	"  --max-bytes N          largest body accepted (default 52428800)\n"
	"  --timeout SEC          limit for a whole download, each try (default 120)\n"
	"  --connect-timeout SEC  limit for connecting (default 10)\n"
	"  --speed-time SEC       abort when slower than 1024 bytes/s this long (default 30)\n"
	"  --retries N            retries of a 5xx, timeout or reset, with backoff (default 3)\n"
	"Only http and https, at most 5 redirects.  Every address connected is checked first:\n"
	"loopback and private ones are refused unless IMGPIPE_ALLOW_PRIVATE=1; cloud metadata,\n"
	"link-local, multicast, broadcast, unspecified and reserved ones always.\n";

static struct {
	long parallel;
	const char *dir;          /* NULL: the current directory */
	long max_bytes;
	long timeout;
	long connect_timeout;
	long speed_time;
	long retries;
	int allow_private;
} opt = { 8, NULL, 50L << 20, 120, 10, 30, 3, 0 };

/* ---- what an image is ---- */

/* Says what a body that is no image starts with, for the error. */
static void describe(const unsigned char *b, size_t n, char *out, size_t cap)
{
	size_t i, len = 0;

	if (n == 0) {
		snprintf(out, cap, "empty body");
		return;
	}
	for (i = 0; i < n; i++)
		if ((b[i] < 0x20 && b[i] != '\t' && b[i] != '\n' && b[i] != '\r') || b[i] == 0x7f)
			break;
	if (i == n) {
		snprintf(out, cap, "starts with text");
		return;
	}
	len = (size_t)snprintf(out, cap, "starts with bytes");
	for (i = 0; i < n && i < 4 && len < cap; i++)
		len += (size_t)snprintf(out + len, cap - len, " %02x", b[i]);
}

/* ---- one download ---- */

/* One record being fetched: its transfer, its output file, and why it failed. */
struct job {
	bson_t *rec;
	const char *url;                   /* inside rec */
	CURL *h;
	size_t slot;
	long attempts;
	int64_t retry_at;                  /* monotonic ms; 0 while transferring */
	char errbuf[CURL_ERROR_SIZE];
	char *fail;                        /* why this try failed, once it did */
	struct netguard guard;             /* the address policy, on every connection */
	unsigned char head[FORMAT_SNIFF_BYTES];   /* kept until the type is sniffed */
	size_t headlen;
	curl_off_t bytes;                  /* body bytes received */
	const struct image_format *type;
	char *path;                        /* output file, once the type is known */
	int fd;
};

/* Records why the job's try failed; the first reason wins. */
static void __attribute__((format(printf, 2, 3))) job_fail(struct job *j, const char *fmt, ...)
{
	va_list ap;

	if (j->fail)
		return;
	va_start(ap, fmt);
	j->fail = bson_strdupv_printf(fmt, ap);
	va_end(ap);
}

/* The name a record's file gets, from its batch_id, serial_no and index, else NULL.
 * Only [A-Za-z0-9_-] survive of batch_id, so the name stays inside --dir. */
static char *file_stem(const bson_t *rec)
{
	const char *batch = rec_str(rec, "batch_id");
	int64_t serial = rec_int(rec, "serial_no", -1), index = rec_int(rec, "index", -1);
	char stem[128] = "";
	size_t len = 0;

	for (; batch && *batch && len < 64; batch++)
		stem[len++] = isalnum((unsigned char)*batch) || *batch == '-' ? *batch : '_';
	if (serial >= 0)
		len += (size_t)snprintf(stem + len, sizeof stem - len, "%s%lld", len ? "-" : "",
					(long long)serial);
	if (index >= 0)
		snprintf(stem + len, sizeof stem - len, "%s%lld", len ? "-" : "", (long long)index);
	return stem[0] ? bson_strdup(stem) : NULL;
}

/* Creates the job's file, never over an existing one: STEM.EXT when free, else
 * STEM-XXXXXX.EXT with a random part.  Returns -1 with j->fail set on failure. */
static int create_file(struct job *j)
{
	char *stem = file_stem(j->rec);
	const char *dir = opt.dir ? opt.dir : "";
	const char *slash = *dir && dir[strlen(dir) - 1] != '/' ? "/" : "";
	const char *ext = j->type->suffix;

	if (stem) {
		j->path = bson_strdup_printf("%s%s%s.%s", dir, slash, stem, ext);
		j->fd = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (j->fd < 0 && errno == EEXIST) {
			bson_free(j->path);
			j->path = NULL;
		}
	}
	if (!j->path) {
		j->path = bson_strdup_printf("%s%s%s-XXXXXX.%s", dir, slash, stem ? stem : "image", ext);
		j->fd = mkostemps(j->path, (int)strlen(ext) + 1, O_CLOEXEC);
		if (j->fd >= 0 && fchmod(j->fd, 0644) != 0) {
			int e = errno;
			close(j->fd);
			unlink(j->path);
			j->fd = -1;
			errno = e;
		}
	}
	bson_free(stem);
	if (j->fd < 0) {
		job_fail(j, "cannot create %s: %s", j->path, strerror(errno));
		return -1;
	}
	return 0;
}

static int write_all(struct job *j, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(j->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			job_fail(j, "cannot write %s: %s", j->path, strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sniffs the head; for an image creates the file and writes the head into it. */
static int start_file(struct job *j)
{
	char what[64];

	j->type = format_sniff(j->head, j->headlen);
	if (!j->type) {
		describe(j->head, j->headlen, what, sizeof what);
		job_fail(j, "not an image (%s)", what);
		return -1;
	}
	if (create_file(j) != 0)
		return -1;
	return write_all(j, j->head, j->headlen);
}

/* Removes the file of a failed download. */
static void drop_file(struct job *j)
{
	if (j->fd >= 0) {
		close(j->fd);
		j->fd = -1;
	}
	if (j->path) {
		unlink(j->path);
		bson_free(j->path);
		j->path = NULL;
	}
}

static int is_2xx(struct job *j)
{
	long code = 0;
	curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &code);
	return code >= 200 && code <= 299;
}

/* Streams the body: the first bytes to the head until it can be sniffed, the rest to the
 * file.  Returning less than given aborts the transfer (too large, no image, disk). */
static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct job *j = p;
	size_t len = size * n, take;

	if (j->bytes + (curl_off_t)len > opt.max_bytes) {
		job_fail(j, "larger than %ld bytes", opt.max_bytes);
		return 0;
	}
	j->bytes += (curl_off_t)len;
	if (!is_2xx(j))
		return len;    /* an error page: only its status matters */
	if (j->fd < 0) {
		take = len < FORMAT_SNIFF_BYTES - j->headlen ? len : FORMAT_SNIFF_BYTES - j->headlen;
		memcpy(j->head + j->headlen, data, take);
		j->headlen += take;
		if (j->headlen < FORMAT_SNIFF_BYTES)
			return len;
		if (start_file(j) != 0)
			return 0;
		return write_all(j, data + take, len - take) == 0 ? len : 0;
	}
	return write_all(j, data, len) == 0 ? len : 0;
}

#define SETOPT(h, o, v) do { \
		if (curl_easy_setopt(h, o, v) != CURLE_OK) \
			errx(EX_SOFTWARE, "curl_easy_setopt(%s) failed", #o); \
	} while (0)

static struct job *job_new(bson_t *rec, size_t slot)
{
	struct job *j = bson_malloc0(sizeof *j);
	static const char agent[] = "fetchimg/" IMGPIPE_VERSION;

	j->rec = rec;
	j->url = rec_str(rec, "url");
	j->slot = slot;
	j->fd = -1;
	if (!(j->h = curl_easy_init()))
		errx(EX_SOFTWARE, "curl_easy_init failed");
	SETOPT(j->h, CURLOPT_URL, j->url);
	SETOPT(j->h, CURLOPT_PRIVATE, j);
	SETOPT(j->h, CURLOPT_ERRORBUFFER, j->errbuf);
	SETOPT(j->h, CURLOPT_USERAGENT, agent);
	SETOPT(j->h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(j->h, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(j->h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SETOPT(j->h, CURLOPT_FOLLOWLOCATION, 1L);
	SETOPT(j->h, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	j->guard.allow_private = opt.allow_private;
	if (netguard_attach(j->h, &j->guard) != 0)
		errx(EX_SOFTWARE, "cannot set the address policy on a curl handle");
	SETOPT(j->h, CURLOPT_FAILONERROR, 1L);
	SETOPT(j->h, CURLOPT_CONNECTTIMEOUT, opt.connect_timeout);
	SETOPT(j->h, CURLOPT_TIMEOUT, opt.timeout);
	SETOPT(j->h, CURLOPT_LOW_SPEED_LIMIT, (long)SPEED_LIMIT);
	SETOPT(j->h, CURLOPT_LOW_SPEED_TIME, opt.speed_time);
	SETOPT(j->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)opt.max_bytes);
	SETOPT(j->h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(j->h, CURLOPT_WRITEDATA, j);
	return j;
}

/* Frees a finished job; its file, if any, stays. */
static void job_free(struct job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	bson_free(j->path);
	bson_free(j->fail);
	curl_easy_cleanup(j->h);
	bson_destroy(j->rec);
	bson_free(j);
}

/* Clears what one try left behind, before the next. */
static void job_reset(struct job *j)
{
	drop_file(j);
	bson_free(j->fail);
	j->fail = NULL;
	j->errbuf[0] = '\0';
	j->guard.refused = NULL;
	j->headlen = 0;
	j->bytes = 0;
	j->type = NULL;
}

/* Records why the transfer failed and returns whether trying again may help. */
static int transfer_error(struct job *j, CURLcode rc)
{
	const char *detail = j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc);
	char *where = NULL, refused[256];
	long code = 0;
	curl_off_t connect = 0, total = 0, length = -1;

	curl_easy_getinfo(j->h, CURLINFO_EFFECTIVE_URL, &where);
	curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &code);
	where = where ? where : (char *)j->url;
	switch (rc) {
	case CURLE_OK:
	case CURLE_HTTP_RETURNED_ERROR:
		job_fail(j, "HTTP %ld from %s", code, where);
		return code >= 500 || code == 408 || code == 429;
	case CURLE_COULDNT_RESOLVE_HOST:
		job_fail(j, "DNS lookup failed: %s", detail);
		return 0;
	case CURLE_COULDNT_CONNECT:
		job_fail(j, "%s", netguard_error(&j->guard, j->h, rc, refused, sizeof refused) ?
				  refused : detail);
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		/* curl says only "timed out": tell the three limits apart by the clock.  The
		 * total one ends the transfer on time; a low speed can end it any time. */
		curl_easy_getinfo(j->h, CURLINFO_CONNECT_TIME_T, &connect);
		curl_easy_getinfo(j->h, CURLINFO_TOTAL_TIME_T, &total);
		if (connect == 0)
			job_fail(j, "connect timed out after %lds",
				 opt.connect_timeout < opt.timeout ? opt.connect_timeout : opt.timeout);
		else if (total + 500000 >= (curl_off_t)opt.timeout * 1000000)
			job_fail(j, "timed out after %lds", opt.timeout);
		else
			job_fail(j, "too slow: under %d bytes/s for %lds", SPEED_LIMIT, opt.speed_time);
		return 1;
	case CURLE_TOO_MANY_REDIRECTS:
		job_fail(j, "more than %d redirects from %s", MAX_REDIRECTS, j->url);
		return 0;
	case CURLE_FILESIZE_EXCEEDED:
		job_fail(j, "larger than %ld bytes", opt.max_bytes);
		return 0;
	case CURLE_UNSUPPORTED_PROTOCOL:
		job_fail(j, "unsupported protocol (http and https only): %s", where);
		return 0;
	case CURLE_PARTIAL_FILE:
		curl_easy_getinfo(j->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
		job_fail(j, "incomplete body: got %lld of %lld bytes from %s",
			 (long long)j->bytes, (long long)length, where);
		return 1;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		job_fail(j, "connection failed: %s", detail);
		return 1;
	default:
		job_fail(j, "%s", detail);
		return 0;
	}
}

/* Completes a finished try: on success closes the file and leaves j->fail NULL, else
 * sets it and returns whether a retry may help. */
static int job_done(struct job *j, CURLcode rc)
{
	if (j->fail)
		return 0;    /* we aborted it ourselves */
	if (rc != CURLE_OK || !is_2xx(j))
		return transfer_error(j, rc);
	if (j->fd < 0 && start_file(j) != 0)
		return 0;
	if (close(j->fd) != 0)
		job_fail(j, "cannot write %s: %s", j->path, strerror(errno));
	j->fd = -1;
	return 0;
}

/* ---- the stream ---- */

struct run {
	CURLM *multi;
	struct stage in;
	struct job **slots;       /* opt.parallel of them; NULL when free */
	long busy;
	int eof;
};

/* libbson's monotonic clock, in milliseconds. */
static int64_t now_ms(void)
{
	return bson_get_monotonic_time() / 1000;
}

static void add_transfer(struct run *r, struct job *j)
{
	j->retry_at = 0;
	if (curl_multi_add_handle(r->multi, j->h) != CURLM_OK)
		errx(EX_SOFTWARE, "curl_multi_add_handle failed");
}

/* Reads one input line: starts its download, or passes it straight through. */
static void read_record(struct run *r)
{
	bson_t *rec;
	size_t slot = 0;

	switch (stage_read(&r->in, &rec)) {
	case STAGE_END:
		r->eof = 1;
		return;
	case STAGE_PASS:
		stage_pass(&r->in);
		return;
	case STAGE_WORK:
		break;
	}
	while (r->slots[slot])
		slot++;
	r->slots[slot] = job_new(rec, slot);
	r->busy++;
	add_transfer(r, r->slots[slot]);
}

/* A try has ended: retry it later, or write its record and free its slot. */
static void finish(struct run *r, struct job *j, CURLcode rc)
{
	int transient = job_done(j, rc);
	bson_t *out;

	curl_multi_remove_handle(r->multi, j->h);
	if (j->fail && transient && j->attempts < opt.retries) {
		j->attempts++;
		warnx("%s: %s; retry %ld of %ld", j->url, j->fail, j->attempts, opt.retries);
		job_reset(j);
		j->retry_at = now_ms() + backoff_ms(BACKOFF_MS, BACKOFF_MAX_MS, (int)j->attempts);
		return;
	}
	if (j->fail) {
		drop_file(j);
		out = rec_error(j->rec, "%s", j->fail);
	} else {
		out = bson_new();
		bson_copy_to_excluding_noinit(j->rec, out, "file", "input_bytes", "content_type", NULL);
		BSON_APPEND_UTF8(out, "file", j->path);
		BSON_APPEND_INT64(out, "input_bytes", (int64_t)j->bytes);
		BSON_APPEND_UTF8(out, "content_type", j->type->mime);
	}
	stage_write(out);
	bson_destroy(out);
	r->slots[j->slot] = NULL;
	r->busy--;
	job_free(j);
}

static void reap(struct run *r)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(r->multi, &left))) {
		struct job *j = NULL;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		finish(r, j, msg->data.result);
	}
}

/* Restarts the retries that are due; returns ms until the next one (at most 1000). */
static int restart_due(struct run *r)
{
	int64_t now = now_ms(), next = 1000;
	for (long i = 0; i < opt.parallel; i++) {
		struct job *j = r->slots[i];
		if (!j || !j->retry_at)
			continue;
		if (j->retry_at <= now)
			add_transfer(r, j);
		else if (j->retry_at - now < next)
			next = j->retry_at - now;
	}
	return (int)next;
}

static int stdin_ready(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	return poll(&p, 1, 0) > 0 && p.revents;
}

/* Streams stdin to stdout; returns the exit status. */
static int run(void)
{
	struct run r = { 0 };
	struct stat st;
	int running;

	/* On a pipe, read stdin unbuffered: then poll(2) tells the truth, with no records
	 * hiding in a stdio buffer while we wait for downloads. */
	if (fstat(0, &st) == 0 && !S_ISREG(st.st_mode))
		setvbuf(stdin, NULL, _IONBF, 0);
	stage_init(&r.in, "url");
	r.slots = bson_malloc0(sizeof *r.slots * (size_t)opt.parallel);
	if (!(r.multi = curl_multi_init()))
		errx(EX_SOFTWARE, "curl_multi_init failed");

	while (!r.eof || r.busy) {
		int want_input;
		struct curl_waitfd in = { .fd = 0, .events = CURL_WAIT_POLLIN };
		int wait_ms;

		if (curl_multi_perform(r.multi, &running) != CURLM_OK)
			errx(EX_SOFTWARE, "curl_multi_perform failed");
		reap(&r);
		wait_ms = restart_due(&r);
		want_input = !r.eof && r.busy < opt.parallel;
		/* stdin is polled with the transfers only to wake us; stdin_ready() decides,
		 * as curl does not report a hang-up (end of input) on extra descriptors. */
		if (want_input && stdin_ready()) {
			read_record(&r);
			continue;
		}
		if (curl_multi_poll(r.multi, &in, want_input ? 1 : 0, wait_ms, NULL) != CURLM_OK)
			errx(EX_SOFTWARE, "curl_multi_poll failed");
	}
	curl_multi_cleanup(r.multi);
	bson_free(r.slots);
	return stage_end(&r.in);
}

/* ---- command line ---- */

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "parallel", required_argument, NULL, 'p' },
		{ "dir", required_argument, NULL, 'd' },
		{ "max-bytes", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "connect-timeout", required_argument, NULL, 'c' },
		{ "speed-time", required_argument, NULL, 's' },
		{ "retries", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	struct stat st;
	int c;

	while ((c = cli_getopt(argc, argv, "", longopts, usage)) != -1) {
		switch (c) {
		case 'p': opt.parallel = cli_long("--parallel", optarg, 1, 1000); break;
		case 'd': opt.dir = optarg; break;
		case 'm': opt.max_bytes = cli_long("--max-bytes", optarg, 1, LONG_MAX); break;
		case 't': opt.timeout = cli_long("--timeout", optarg, 1, 86400); break;
		case 'c': opt.connect_timeout = cli_long("--connect-timeout", optarg, 1, 3600); break;
		case 's': opt.speed_time = cli_long("--speed-time", optarg, 1, 86400); break;
		case 'r': opt.retries = cli_long("--retries", optarg, 0, 10); break;
		}
	}
	if (optind < argc)
		cli_usage_error(usage, "unexpected argument: %s", argv[optind]);
	if (opt.dir && stat(opt.dir, &st) != 0)
		cli_usage_error(usage, "--dir %s: %s", opt.dir, strerror(errno));
	if (opt.dir && !S_ISDIR(st.st_mode))
		cli_usage_error(usage, "--dir %s: not a directory", opt.dir);
}

int main(int argc, char **argv)
{
	struct config cfg;
	int status;

	cli_common(argc, argv, usage);
	parse_options(argc, argv);
	config_load(&cfg);
	opt.allow_private = cfg.allow_private;
	config_free(&cfg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(EX_SOFTWARE, "curl_global_init failed");
	status = run();
	curl_global_cleanup();
	return status;
}
