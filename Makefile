# imgpipe: one Makefile for the shared library, every tool, the dispatcher and the CGI.
#   make            build everything into bin/
#   make setup      install what imgpipe needs to build and run (scripts/setup)
#   make test       install what the tests need too, build, run the whole bats suite
#   make asan       the same suite with AddressSanitizer and UBSan
#   make fuzz       run each fuzz target for a bounded time (FUZZ_SECONDS)
#   make demo       the main job end to end on the bundled sample (installs its photographs)
#   make install    PREFIX=/usr/local DESTDIR=

# The one place of the version: the programs' --version, bin/imgpipe.version for the
# imgpipe command, and the man pages' headers (@VERSION@ in the sources) come from it.
VERSION  = 0.1.0
PREFIX  ?= /usr/local
CC      ?= cc
PKGS     = libcurl vips libjpeg libmongoc-1.0 libbson-1.0 hiredis libcrypto gmime-3.0 json-c
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Ilib \
           -DIMGPIPE_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS))
LDFLAGS += -Wl,--as-needed
LDLIBS  += lib/libimgpipe.a $(shell pkg-config --libs $(PKGS)) -lcsv -lm

ifdef SANITIZE
CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# make V=1 shows the whole command lines
ifndef V
Q = @
endif

LIBSRC   = $(wildcard lib/*.c)
LIBOBJ   = $(LIBSRC:.c=.o)
HEADERS  = $(wildcard lib/*.h)

# program: its source files (each program lives in its own folder, see docs/design.md)
PROGS    = csvsplit fetchimg shrink s3put s3get dbrecord notify imgpipe-dispatch imgpipe.cgi
SRC_csvsplit         = tools/csvsplit/csvsplit.c
SRC_fetchimg         = tools/fetchimg/fetchimg.c
SRC_shrink           = tools/shrink/shrink.c
SRC_s3put            = tools/s3put/s3put.c
SRC_s3get            = tools/s3put/s3get.c
SRC_dbrecord         = tools/dbrecord/dbrecord.c tools/dbrecord/chunks.c tools/dbrecord/record.c \
                       tools/dbrecord/read.c tools/dbrecord/copies.c
SRC_notify           = tools/notify/notify.c
SRC_imgpipe-dispatch = dispatch/dispatch.c dispatch/log.c dispatch/sweep.c dispatch/deliver.c
SRC_imgpipe.cgi      = cgi/cgi.c $(filter-out cgi/cgi.c,$(wildcard cgi/*.c))

BINS     = $(addprefix bin/,$(PROGS))
MANPAGES = $(wildcard man/*.1 tools/*/*.1 dispatch/*.1 cgi/*.1)
MANOUT   = $(addprefix build/man/,$(notdir $(MANPAGES)))
vpath %.1 $(sort $(dir $(MANPAGES)))
# What scripts/ installs as programs; the .bash files are only sourced.
SCRIPTS  = $(filter-out %.bash,$(wildcard scripts/*))

all: $(BINS) bin/imgpipe.version $(MANOUT)

bin/imgpipe.version: Makefile
	$(Q)echo $(VERSION) >$@

build/man/%.1: %.1 Makefile
	@echo "  MAN   $@"
	@mkdir -p $(@D)
	$(Q)sed 's/@VERSION@/$(VERSION)/g' $< >$@

lib/libimgpipe.a: $(LIBOBJ)
	$(Q)$(AR) rcs $@ $^

lib/%.o: lib/%.c $(HEADERS)
	@echo "  CC    $@"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

.SECONDEXPANSION:
# A program is rebuilt when the library's headers or those beside its sources change.
$(BINS): bin/%: $$(SRC_$$*) $$(wildcard $$(dir $$(SRC_$$*))*.h) lib/libimgpipe.a $(HEADERS)
	@echo "  CCLD  $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SRC_$*) $(LDLIBS)

test: test-setup all
	tests/run

# Third-party one-time allocations are suppressed in tests/lsan.supp, never our own.
asan:
	$(MAKE) clean
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
		$(MAKE) SANITIZE=1 test
	$(MAKE) clean

fuzz: test-setup
	tests/fuzz/run

setup:
	scripts/setup

demo-setup:
	scripts/setup --demo

test-setup:
	scripts/setup --test

demo: demo-setup all
	bin/imgpipe demo

check-scripts:
	shellcheck -x bin/imgpipe scripts/* tests/run tests/chaos/run \
		.ci/run $(shell grep -l '^#!/usr/bin/env bash' tests/lib/*) tests/fuzz/run tests/bats/*.bash \
		$(shell grep -l '^#!/usr/bin/env bash' bench/* bench/*/* 2>/dev/null)

# Programs in PREFIX/bin; the imgpipe command, the CGI and the scripts, files and sample
# it uses beside each other in PREFIX/lib/imgpipe (bin/imgpipe finds them from its path).
# Nothing of tests/: the demo serves its photographs with Python's own http.server.
LIBDIR = $(PREFIX)/lib/imgpipe
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	           $(addprefix $(DESTDIR)$(LIBDIR)/,bin scripts etc samples)
	install -m 755 $(filter-out bin/imgpipe.cgi,$(BINS)) $(DESTDIR)$(PREFIX)/bin
	install -m 755 bin/imgpipe bin/imgpipe.cgi $(DESTDIR)$(LIBDIR)/bin
	install -m 644 bin/imgpipe.version $(DESTDIR)$(LIBDIR)/bin
	install -m 755 $(SCRIPTS) $(DESTDIR)$(LIBDIR)/scripts
	install -m 644 $(wildcard scripts/*.bash) $(DESTDIR)$(LIBDIR)/scripts
	install -m 644 etc/imgpipe.env etc/lighttpd.conf.in $(DESTDIR)$(LIBDIR)/etc
	install -m 644 samples/products.csv $(DESTDIR)$(LIBDIR)/samples
	ln -sf ../lib/imgpipe/bin/imgpipe $(DESTDIR)$(PREFIX)/bin/imgpipe
	install -m 644 $(MANOUT) $(DESTDIR)$(PREFIX)/share/man/man1

print-pkgs:
	@echo $(PKGS)

print-version:
	@echo $(VERSION)

clean:
	rm -f $(BINS) bin/imgpipe.version lib/*.o lib/*.a tests/fuzz/*-fuzz
	rm -rf build

.PHONY: all test asan fuzz setup demo-setup test-setup demo check-scripts install print-pkgs \
	print-version clean
