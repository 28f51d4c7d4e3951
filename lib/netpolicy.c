/* The address policy of every outgoing request (see netpolicy.h): one table of networks,
 * the check libcurl runs before each socket, and the check of a webhook URL at upload. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

#include "imgpipe.h"
#include "netpolicy.h"

/* A network and what it is.  The first entry of a table that holds the address decides.
 * An IPv6 entry without a kind carries an IPv4 address at byte v4_at: the address is
 * judged as that one, so ::ffff:127.0.0.1 or 64:ff9b::7f00:1 is loopback as 127.0.0.1 is. */
struct net {
	const char *prefix;
	int bits;
	const char *kind;
	int opened_by_allow_private;     /* loopback and private networks only */
	int v4_at;
};

static const struct net v4_nets[] = {
	/* the metadata services of AWS, GCP, Azure (169.254.169.254) and Alibaba Cloud:
	 * never reachable, as they hand out the host's credentials */
	{ "169.254.169.254", 32, "cloud metadata", 0, 0 },
	{ "100.100.100.200", 32, "cloud metadata", 0, 0 },
	{ "0.0.0.0", 8, "unspecified", 0, 0 },         /* Linux connects 0.0.0.0 to this host */
	{ "10.0.0.0", 8, "private network", 1, 0 },
	{ "100.64.0.0", 10, "private network", 1, 0 },  /* carrier-grade NAT */
	{ "127.0.0.0", 8, "loopback", 1, 0 },
	{ "169.254.0.0", 16, "link-local", 0, 0 },
	{ "172.16.0.0", 12, "private network", 1, 0 },
	{ "192.0.0.0", 24, "reserved", 0, 0 },          /* IETF protocol assignments */
	{ "192.168.0.0", 16, "private network", 1, 0 },
	{ "198.18.0.0", 15, "reserved", 0, 0 },         /* benchmarking */
	{ "224.0.0.0", 4, "multicast", 0, 0 },
	{ "255.255.255.255", 32, "broadcast", 0, 0 },
	{ "240.0.0.0", 4, "reserved", 0, 0 },
};

static const struct net v6_nets[] = {
	{ "::", 128, "unspecified", 0, 0 },
	{ "::1", 128, "loopback", 1, 0 },
	{ "::ffff:0:0", 96, NULL, 0, 12 },              /* IPv4-mapped */
	{ "::", 96, NULL, 0, 12 },                      /* IPv4-compatible (deprecated) */
	{ "64:ff9b::", 96, NULL, 0, 12 },               /* NAT64, the well-known prefix */
	/* NAT64 for local use (RFC 8215), read in its usual /96 form: the operator may embed
	 * otherwise, but then it is the operator's own network that translates */
	{ "64:ff9b:1::", 48, NULL, 0, 12 },
	{ "2002::", 16, NULL, 0, 2 },                   /* 6to4 */
	{ "2001::", 32, "Teredo", 0, 0 },               /* its IPv4 address is obfuscated */
	{ "fd00:ec2::254", 128, "cloud metadata", 0, 0 },   /* AWS, over IPv6 */
	{ "fc00::", 7, "private network", 1, 0 },
	{ "fec0::", 10, "site-local", 0, 0 },
	{ "fe80::", 10, "link-local", 0, 0 },
	{ "ff00::", 8, "multicast", 0, 0 },
};

static int in_prefix(const unsigned char *a, const unsigned char *net, int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a, net, (size_t)whole) != 0)
		return 0;
	return rest == 0 || ((a[whole] ^ net[whole]) & (0xff << (8 - rest))) == 0;
}

/* The first network of nets (of family af) that holds address a, or NULL. */
static const struct net *find_net(int af, const unsigned char *a, const struct net *nets,
				  size_t n)
{
	unsigned char net[16];

	for (size_t i = 0; i < n; i++) {
		if (inet_pton(af, nets[i].prefix, net) != 1)
			errx(EX_SOFTWARE, "bad network %s", nets[i].prefix);
		if (in_prefix(a, net, nets[i].bits))
			return &nets[i];
	}
	return NULL;
}

static const char *verdict(const struct net *n, int allow_private)
{
	return n && !(n->opened_by_allow_private && allow_private) ? n->kind : NULL;
}

static const char *v4_refused(const unsigned char a[4], int allow_private)
{
	return verdict(find_net(AF_INET, a, v4_nets, sizeof v4_nets / sizeof *v4_nets),
		       allow_private);
}

static const char *v6_refused(const unsigned char a[16], int allow_private)
{
	const struct net *n = find_net(AF_INET6, a, v6_nets, sizeof v6_nets / sizeof *v6_nets);

	if (n && !n->kind)
		return v4_refused(a + n->v4_at, allow_private);
	return verdict(n, allow_private);
}

const char *netpolicy_refused(const struct sockaddr *addr, int allow_private)
{
	if (addr->sa_family == AF_INET)
		return v4_refused((const unsigned char *)&((const struct sockaddr_in *)addr)->sin_addr,
				  allow_private);
	if (addr->sa_family == AF_INET6)
		return v6_refused(((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr,
				  allow_private);
	return "not IP";
}

/* libcurl's CURLOPT_OPENSOCKETFUNCTION: the address is judged before the socket exists,
 * so a refused one is never connected, let alone sent anything. */
static curl_socket_t open_checked(void *p, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct netguard *g = p;
	struct sockaddr_storage sa = { 0 };
	const char *kind;

	(void)purpose;
	memcpy(&sa, &a->addr, a->addrlen < sizeof sa ? a->addrlen : sizeof sa);
	kind = netpolicy_refused((const struct sockaddr *)&sa, g->allow_private);
	if (kind) {
		if (!g->refused)
			g->refused = kind;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

int netguard_attach(CURL *h, struct netguard *g)
{
	g->refused = NULL;
	return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_checked) != CURLE_OK ||
	       curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, g) != CURLE_OK ||
	       curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK ? -1 : 0;
}

/* The host of url as libcurl's URL parser reads it (an IPv6 address in brackets), or NULL.
 * Free it with curl_free. */
static char *url_host(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		host = NULL;
	curl_url_cleanup(u);
	return host;
}

int netguard_error(const struct netguard *g, CURL *h, CURLcode rc, char *buf, size_t len)
{
	char *url = NULL, *host;

	if (rc != CURLE_COULDNT_CONNECT || !g->refused)
		return 0;
	if (curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || !url)
		url = "";
	host = url_host(url);
	snprintf(buf, len, "refused address for host %s (%s)", host ? host : "?", g->refused);
	curl_free(host);
	return 1;
}

/* One name lookup, on the heap: after a timeout the resolver's thread may still write to
 * it, so then it is left to that thread (the CGI that asked ends soon after). */
struct lookup {
	struct gaicb cb;
	struct addrinfo hints;
	char name[];
};

/* getaddrinfo(3) for name, giving up after timeout_s seconds.  Returns 0 with *res set,
 * or a getaddrinfo error (EAI_AGAIN on the timeout). */
static int resolve(const char *name, int timeout_s, struct addrinfo **res)
{
	size_t n = strlen(name) + 1;
	struct lookup *l = bson_malloc0(sizeof *l + n);
	struct gaicb *list[1] = { &l->cb };
	const struct timespec limit = { .tv_sec = timeout_s };
	int rc;

	memcpy(l->name, name, n);
	l->hints.ai_socktype = SOCK_STREAM;
	l->cb.ar_name = l->name;
	l->cb.ar_request = &l->hints;
	if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL)) != 0) {
		bson_free(l);
		return rc;
	}
	while ((rc = gai_suspend((const struct gaicb *const *)list, 1, &limit)) == EAI_INTR)
		;
	if (rc == EAI_AGAIN && gai_cancel(&l->cb) == EAI_NOTCANCELED)
		return EAI_AGAIN;    /* still running: l stays the resolver's */
	rc = gai_error(&l->cb);
	*res = rc == 0 ? l->cb.ar_result : NULL;
	bson_free(l);
	return rc;
}

int netpolicy_check_url(const char *url, int allow_private, int timeout_s, char *why,
			size_t whylen)
{
	char *host = url_host(url), *name = host;
	struct addrinfo *res = NULL;
	const char *kind = NULL;
	int ok = 0;

	if (name && name[0] == '[') {     /* an IPv6 address, as a URL spells it */
		name++;
		name[strcspn(name, "]")] = '\0';
	}
	if (!name || resolve(name, timeout_s, &res) != 0) {
		snprintf(why, whylen, "host does not resolve");
		curl_free(host);
		return -1;
	}
	for (const struct addrinfo *ai = res; ai && !ok; ai = ai->ai_next) {
		const char *k = netpolicy_refused(ai->ai_addr, allow_private);
		ok = !k;
		kind = kind ? kind : k;
	}
	if (!ok)
		snprintf(why, whylen, "refused address (%s)", kind ? kind : "none");
	freeaddrinfo(res);
	curl_free(host);
	return ok ? 0 : -1;
}
