/*
 * The connection as net.c (opening it: libcurl's login and what it tells,
 * TLS facts, a memory connection for tests) and net_io.c (bytes over it)
 * both see it.  Only these include it (and tests/fuzz/fuzz_net_lines.c,
 * which includes net.c whole).
 */
#ifndef NET_INT_H
#define NET_INT_H

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "bridge.h"

#define RBUF_SIZE	65536
#define LOGIN_LINES_MAX	16384

struct conn {
	CURL		*h;
	curl_socket_t	 sock;
	const char	*proto;		/* "pop3" or "imap", for messages */
	char		*host;
	char		*account;
	long		 timeout;	/* seconds */
	char		 rbuf[RBUF_SIZE];
	size_t		 rstart, rend;
	char		 login_lines[LOGIN_LINES_MAX];
	size_t		 login_len;
	char		 tls_version[32];
	char		 cert_subject[512];
	char		 cert_names[512];	/* DNS names it is for */
	char		 errbuf[CURL_ERROR_SIZE];
	bool		 bad_greeting;	/* the first line was no greeting */
	bool		 dead;		/* a read or write failed */
	SSL		*ssl;		/* curl's, once the handshake is done */
	/* conn_memory: a scripted server instead of libcurl's socket. */
	bool		 memory;
	const char	*in;
	size_t		 inlen, inpos;
	struct conn_memory_io io;
};

/* Seconds left of the account run's deadline (net_deadline), or
 * NET_NO_DEADLINE when there is none. */
#define NET_NO_DEADLINE	1e9
double		 net_deadline_left(void);

#endif
