# popbridge: a POP3 to IMAP bridge.
#
#   make            build bridge/popbridge
#   make demo       install what is missing, build, import sample mail in a
#                   private sandbox (Dovecot on 127.0.0.1) and show it
#   make check      install what is missing, build, run every test
#   make stress     fault injection and kill -9 at length
#   make fuzz       the libFuzzer targets, FUZZ_SECONDS each
#   make bench      speed and memory against other clients (bench/)
#   make install    PREFIX=/usr/local DESTDIR=
#   make DEBUG=1    build with AddressSanitizer and UBSan
PREFIX	?= /usr/local
DESTDIR	?=
BINDIR	 = $(PREFIX)/bin
MANDIR	 = $(PREFIX)/share/man
DOCDIR	 = $(PREFIX)/share/doc/popbridge
DATADIR	 = $(PREFIX)/share/popbridge

CC	?= cc
PKGS	 = libcurl openssl libconfig sqlite3 libxml-2.0 libmicrohttpd jansson
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wformat=2 -Wshadow \
	   -Wmissing-prototypes -Wstrict-prototypes -Wno-unused-parameter
ifdef DEBUG
CFLAGS	+= -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
LDFLAGS	+= -fsanitize=address,undefined
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRCS	= bridge/main.c bridge/account.c bridge/config.c bridge/ledger.c \
	  bridge/net.c bridge/pop3.c bridge/pop3_parse.c bridge/imap.c \
	  bridge/imap_parse.c bridge/msg.c bridge/date.c bridge/spool.c \
	  bridge/hash.c bridge/log.c bridge/xmalloc.c bridge/add.c \
	  bridge/discover.c bridge/daemon.c bridge/status.c bridge/transfer.c \
	  bridge/migrate.c bridge/tty.c bridge/worker.c bridge/file.c \
	  bridge/csv.c bridge/batch.c bridge/throttle.c bridge/sigpipe.c \
	  bridge/ident.c bridge/ledger_status.c bridge/plan.c bridge/settle.c \
	  bridge/adopt.c bridge/imap_append.c bridge/imap_fetch.c \
	  bridge/result.c bridge/stop.c bridge/session.c \
	  bridge/ledger_msg.c bridge/ledger_watch.c bridge/pace.c \
	  bridge/route.c bridge/config_route.c \
	  bridge/gmail.c bridge/gmail_json.c bridge/gmail_import.c \
	  bridge/gmail_find.c bridge/gmail_quota.c bridge/config_gmail.c
# The routing engine's pieces (issue 16).
# The daemon's pid lock and state file, as status reads them.
SRCS	+= bridge/daemon_state.c
# Logging in as an account: its secret resolved for the connection (issue 14).
SRCS	+= bridge/login.c
SRCS	+= bridge/route_show.c bridge/transfer_pop.c bridge/transfer_route.c \
	   bridge/transfer_record.c bridge/transfer_gmail.c
# The daemon's web page and metrics (issue 18), the reload helper.
SRCS	+= bridge/reload.c bridge/config_listen.c bridge/ledger_metrics.c \
	   bridge/metrics.c bridge/page.c bridge/http_form.c bridge/web.c \
	   bridge/http.c
# Hex and base64, shared by the web form, routing and Gmail parsers.
SRCS	+= bridge/codec.c
# A ledger read from outside a run, for status and the metrics.
SRCS	+= bridge/ledger_read.c
# The config's and add's parts (issue 13, split for issue 14).
SRCS	+= bridge/config_url.c bridge/config_proxy.c bridge/config_secfile.c \
	   bridge/config_read.c bridge/config_secret.c bridge/add_owner.c \
	   bridge/add_ask.c bridge/add_login.c bridge/add_write.c \
	   bridge/add_gmail.c
# Issue 14's splits: route.c's header text, batch.c's rows and scheduling.
SRCS	+= bridge/route_text.c bridge/batch_row.c bridge/batch_run.c \
	   bridge/batch_report.c
# Issue 14's splits: discover.c's sources, net.c's reads and writes.
SRCS	+= bridge/discover_preset.c bridge/discover_autoconfig.c \
	   bridge/discover_http.c bridge/discover_srv.c bridge/net_io.c
# Issue 14: the bases add's and discovery's files call down to (no cycle
# among them), and the bounded reply buffer of discovery and Gmail.
SRCS	+= bridge/add_util.c bridge/discover_util.c bridge/bounded.c
# Issue 14: check and dry runs out of account.c.
SRCS	+= bridge/check.c bridge/account_valid.c
# Issue 14: the config loader's base, and its endpoint groups.
SRCS	+= bridge/config_keys.c bridge/config_endpoint.c
# Issue 15: the transfer's window, sized as the run goes.
SRCS	+= bridge/transfer_flow.c
# Issue 15: the IMAP login beside the POP3 one, in a thread of its own.
SRCS	+= bridge/prelogin.c
LDFLAGS	+= -pthread
OBJS	= $(SRCS:.c=.o)

all: bridge/popbridge

bridge/popbridge: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(PKG_LIBS)

bridge/%.o: bridge/%.c bridge/bridge.h bridge/run.h bridge/imap_int.h \
	    bridge/ledger_int.h bridge/route.h bridge/config_int.h bridge/add_int.h \
	    bridge/transfer_int.h bridge/ledger.h \
	    bridge/gmail.h bridge/gmail_int.h bridge/config_gmail.h
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<
bridge/discover.o bridge/discover_preset.o bridge/discover_autoconfig.o \
    bridge/discover_http.o bridge/discover_srv.o bridge/discover_util.o: \
    bridge/discover_int.h
bridge/net.o bridge/net_io.o: bridge/net_int.h
bridge/batch.o bridge/batch_row.o bridge/batch_run.o: bridge/batch_int.h
bridge/ledger_read.o bridge/ledger_status.o bridge/ledger_metrics.o: \
    bridge/ledger_read.h

# bridge/gmail*.c driven from the command line, for test_gmail_api.py
# until the engine calls them (issue 17).
tests/unit/build/gmail_drive: tests/unit/gmail_drive.c \
	    $(filter-out bridge/main.o,$(OBJS))
	mkdir -p tests/unit/build
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Ibridge $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# Install the Debian packages the build and the tests need (idempotent).
deps:
	sh scripts/deps.sh

demo: deps
	$(MAKE) all
	sh scripts/demo.sh

check: deps
	$(MAKE) all
	sh tests/check.sh

# Fault injection and kill -9 at length (500+ trials); not part of check.
stress: deps
	$(MAKE) all
	sh tests/stress.sh

# The libFuzzer targets, FUZZ_SECONDS each (make check runs them briefly).
FUZZ_SECONDS ?= 300
fuzz: deps
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# Speed and memory, measured side by side with other clients; not a test.
bench: deps
	$(MAKE) all
	sh bench/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)
	install -m 755 bridge/popbridge $(DESTDIR)$(BINDIR)/popbridge
	# a command people run (authorize) and configs name: on PATH, prefixed
	install -m 755 scripts/gmail-token $(DESTDIR)$(BINDIR)/popbridge-gmail-token
	install -m 644 bridge/popbridge.1 $(DESTDIR)$(MANDIR)/man1/popbridge.1
	install -m 644 bridge/popbridge.conf.5 \
	    $(DESTDIR)$(MANDIR)/man5/popbridge.conf.5
	install -m 644 bridge.conf.sample $(DESTDIR)$(DOCDIR)/bridge.conf.sample
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	for f in config/*; do \
	    [ -f "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(DATADIR)/; \
	done; true

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/popbridge \
	    $(DESTDIR)$(BINDIR)/popbridge-gmail-token \
	    $(DESTDIR)$(MANDIR)/man1/popbridge.1 \
	    $(DESTDIR)$(MANDIR)/man5/popbridge.conf.5
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)

clean:
	rm -f bridge/*.o bridge/popbridge
	rm -rf tests/unit/build

.PHONY: all deps demo check stress fuzz bench install uninstall clean
