# popbridge: POP3 to IMAP bridge.  `make` builds bridge/popbridge.
PREFIX	?= /usr/local
DESTDIR	?=
CC	?= cc
PKGS	 = libcurl openssl libconfig sqlite3
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wformat=2 -Wshadow \
	   -Wmissing-prototypes -Wstrict-prototypes -Wno-unused-parameter
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRCS	= bridge/main.c bridge/account.c bridge/config.c bridge/ledger.c \
	  bridge/net.c bridge/pop3.c bridge/pop3_parse.c bridge/imap.c \
	  bridge/imap_parse.c bridge/msg.c bridge/date.c bridge/spool.c \
	  bridge/hash.c bridge/log.c bridge/xmalloc.c
OBJS	= $(SRCS:.c=.o)

all: bridge/popbridge

bridge/popbridge: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(PKG_LIBS)

bridge/%.o: bridge/%.c bridge/bridge.h
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

clean:
	rm -f bridge/*.o bridge/popbridge

.PHONY: all clean
