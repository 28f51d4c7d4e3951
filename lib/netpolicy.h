/* The one address policy of every outgoing request: image downloads (fetchimg), webhooks
 * (notify) and the webhook check at upload (the CGI).  Requests made with libcurl are judged
 * on each address libcurl is about to connect, before its socket exists, so neither a DNS
 * answer (rebinding included) nor a redirect gets round the policy, and nothing is sent to
 * an address refused.  Refused always: cloud metadata, link-local, multicast, broadcast,
 * unspecified, reserved and site-local addresses, Teredo.  Loopback and private networks
 * are refused unless IMGPIPE_ALLOW_PRIVATE=1.  An IPv6 address that carries an IPv4 one
 * (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged as that IPv4 address. */
#ifndef IMGPIPE_NETPOLICY_H
#define IMGPIPE_NETPOLICY_H

#include <stddef.h>
#include <sys/socket.h>
#include <curl/curl.h>

/* The kind of network addr lies in ("loopback", "private network", "cloud metadata", ...)
 * when connecting there is refused, else NULL.  allow_private: IMGPIPE_ALLOW_PRIVATE=1. */
const char *netpolicy_refused(const struct sockaddr *addr, int allow_private);

/* The policy as one curl handle applies it. */
struct netguard {
	int allow_private;
	const char *refused;    /* the kind of the first address refused, or NULL */
};

/* Makes h judge every address with g before it opens a socket for it, and use no proxy
 * (a proxy would hide the address really connected).  Clears g->refused: call it before
 * each transfer.  Returns 0, or -1 when libcurl refuses an option. */
int netguard_attach(CURL *h, struct netguard *g);

/* After a transfer of h ended with rc: when it could not connect because g refused an
 * address, writes "refused address for host HOST (KIND)" into buf, HOST being that of the
 * URL h last tried (never the address it resolved to, which may be internal), and returns
 * 1; else returns 0. */
int netguard_error(const struct netguard *g, CURL *h, CURLcode rc, char *buf, size_t len);

/* Resolves the host of url, within timeout_s seconds, and judges its addresses.  Returns 0
 * when one of them may be connected; else -1 with why: "host does not resolve", or
 * "refused address (KIND)" with the kind of the first address. */
int netpolicy_check_url(const char *url, int allow_private, int timeout_s, char *why,
			size_t whylen);

#endif
