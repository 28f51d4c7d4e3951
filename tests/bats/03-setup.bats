#!/usr/bin/env bats
# imgpipe setup installs what imgpipe needs to build and run, and nothing only the tests,
# the fuzzers or the benchmarks need: those come with scripts/setup --test (make test).

load helpers

# Known from the tests, bench/ and tests/fuzz/, not from scripts/setup.
TEST_ONLY=(bats bats-assert bats-support chromium nodejs npm valgrind clang libclang-rt-14-dev
	shellcheck imagemagick libimage-exiftool-perl libjpeg-turbo-progs libvips-tools iproute2
	plasma-workspace-wallpapers python3-venv)

# Each package imgpipe setup installs, and what of it imgpipe uses:
#   cmd NAME  a program the scripts or the Makefile run     pc NAME  a pkg-config module of PKGS
#   h NAME    a header the C sources include                py NAME  a module the scripts import
#   https     the CA certificates, for libcurl's https downloads and webhooks
#   pg NAME   a PostgreSQL program the stack runs from $POSTGRESQL_BIN (FerretDB's store)
USES="
build-essential      cmd make
pkg-config           cmd pkg-config
libcsv-dev           h   csv.h
libvips-dev          pc  vips
libmongoc-dev        pc  libmongoc-1.0
libbson-dev          pc  libbson-1.0
libhiredis-dev       pc  hiredis
libcurl4-openssl-dev pc  libcurl
libssl-dev           pc  libcrypto
libgmime-3.0-dev     pc  gmime-3.0
libjson-c-dev        pc  json-c
libjpeg62-turbo-dev  pc  libjpeg
redis-server         cmd redis-server
redis-tools          cmd redis-cli
lighttpd             cmd lighttpd
jq                   cmd jq
parallel             cmd parallel
curl                 cmd curl
procps               cmd ps
python3              cmd python3
python3-pymongo      py  pymongo
ca-certificates      https
postgresql           pg  postgres"

# What imgpipe setup installs for FerretDB backend $1 (default postgresql, which needs most).
runtime_packages() { IMGPIPE_FERRETDB_BACKEND=${1:-postgresql} "$ROOT/bin/imgpipe" setup --print; }

postgresql_bin() { (IMGPIPE_ROOT=$ROOT && unset POSTGRESQL_BIN && . "$ROOT/etc/imgpipe.env" && echo "$POSTGRESQL_BIN"); }

# The files of a package and of the packages it depends on directly (build-essential only
# depends on the compiler and make; python3 pre-depends on python3-minimal's /usr/bin/python3).
package_files() {
	local dep
	dpkg -L "$1"
	for dep in $(dpkg-query -W -f='${Pre-Depends}, ${Depends}' "$1" |
		sed -e 's/([^)]*)//g' -e 's/|/,/g' | tr ',' ' '); do
		dpkg -L "$dep" 2>/dev/null || true
	done
}

# Whether package $1 ships what $2 $3 names, and imgpipe (not its tests) uses it.
used() {
	local files scripts=("$ROOT/Makefile" "$ROOT/bin/imgpipe" "$ROOT"/scripts/*)
	files=$(package_files "$1")
	case $2 in
	cmd) grep -Eq "^(/usr)?/s?bin/$3$" <<<"$files" &&
		grep -Eq "(^|[^[:alnum:]_.-])$3($|[^[:alnum:]_.-])" "${scripts[@]}" ;;
	pc) grep -q "/pkgconfig/$3\.pc$" <<<"$files" &&
		make -s --no-print-directory -C "$ROOT" print-pkgs | tr ' ' '\n' | grep -qx "$3" ;;
	h) grep -q "^/usr/include/$3$" <<<"$files" &&
		grep -rq --include='*.[ch]' "#include <$3>" "$ROOT"/{lib,tools,dispatch,cgi} ;;
	py) grep -q "/dist-packages/$3$" <<<"$files" && grep -Eq "^import .*\b$3\b" "${scripts[@]}" ;;
	https) grep -q '^/usr/sbin/update-ca-certificates$' <<<"$files" &&
		grep -rq 'PROTOCOLS_STR, "http,https"' "$ROOT"/tools ;;
	pg) grep -qx "$(postgresql_bin)/$3" <<<"$files" && grep -qF "\"\$POSTGRESQL_BIN/$3\"" "$ROOT/scripts/stack" ;;
	*) false ;;
	esac
}

@test "imgpipe setup installs no test-only package; --demo adds only the photographs" {
	run comm -12 <(runtime_packages | sort) <(printf '%s\n' "${TEST_ONLY[@]}" | sort)
	assert_output ""
	run comm -13 <(runtime_packages | sort) <("$ROOT/bin/imgpipe" setup --demo --print | sort)
	assert_output plasma-workspace-wallpapers
}

@test "scripts/setup --test installs every test-only package as well" {
	run comm -23 <(printf '%s\n' "${TEST_ONLY[@]}" | sort) \
		<("$ROOT/scripts/setup" --test --print | sort)
	assert_output ""
}

@test "nothing imgpipe setup installs depends on a test-only package" {
	run bash -c "apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances $(runtime_packages | tr '\n' ' ') |
		grep -v '^ ' | sort -u"
	assert_success
	[ "${#lines[@]}" -gt 100 ]   # the closure really was computed
	run comm -12 <(printf '%s\n' "${lines[@]}") <(printf '%s\n' "${TEST_ONLY[@]}" | sort)
	assert_output ""
}

@test "PostgreSQL comes only with the FerretDB backend that stores in it" {
	run comm -13 <(runtime_packages sqlite | sort) <(runtime_packages postgresql | sort)
	assert_output postgresql
}

@test "every package imgpipe setup installs is used by imgpipe itself" {
	assert_equal "$(awk 'NF { print $1 }' <<<"$USES" | sort)" "$(runtime_packages | sort)"
	while read -r package kind name; do
		[ -n "$package" ] || continue
		used "$package" "$kind" "$name" || fail "$package: imgpipe uses no $kind $name of it"
	done <<<"$USES"
}

# A PATH where dpkg-query reports the packages in $BATS_TEST_TMPDIR/installed (as
# "PACKAGE, PROVIDES"), apt-get only writes down how it was called, and id says root.
fake_dpkg() {
	local bin="$BATS_TEST_TMPDIR/bin"
	mkdir -p "$bin"
	: >"$BATS_TEST_TMPDIR/installed"
	printf '#!/bin/sh\nsed "s/^/ii |/" %q\n' "$BATS_TEST_TMPDIR/installed" >"$bin/dpkg-query"
	printf '#!/bin/sh\necho "$*" >>%q\n' "$BATS_TEST_TMPDIR/apt-get.log" >"$bin/apt-get"
	printf '#!/bin/sh\necho 0\n' >"$bin/id"
	chmod +x "$bin"/*
	export PATH="$bin:$PATH"
}

@test "from nothing, setup asks apt for what --print lists, and nothing else" {
	fake_dpkg
	for level in "" --demo --test; do
		rm -f "$BATS_TEST_TMPDIR/apt-get.log"
		run "$ROOT/scripts/setup" ${level:+"$level"}
		assert_success
		asked=$(sed -n 's/^install -y -q --no-install-recommends //p' "$BATS_TEST_TMPDIR/apt-get.log")
		listed=$("$ROOT/scripts/setup" ${level:+"$level"} --print | sort | tr '\n' ' ')
		assert_equal "$asked" "${listed% }"
	done
}

@test "setup installs only what is missing; a package another one provides is not missing" {
	fake_dpkg
	runtime_packages | grep -vx jq | sed 's/$/, /' >"$BATS_TEST_TMPDIR/installed"
	run "$ROOT/scripts/setup"
	assert_success
	run cat "$BATS_TEST_TMPDIR/apt-get.log"
	assert_output "$(printf '%s\n' 'update -q' 'install -y -q --no-install-recommends jq')"
	# NodeSource's nodejs provides npm; Debian's npm beside it would conflict with it
	"$ROOT/scripts/setup" --test --print | sed -e 's/$/, /' -e 's/^nodejs, $/nodejs, npm (= 10.8.2)/' |
		grep -vx 'npm, ' >"$BATS_TEST_TMPDIR/installed"
	rm "$BATS_TEST_TMPDIR/apt-get.log"
	run "$ROOT/scripts/setup" --test
	assert_success
	[ ! -e "$BATS_TEST_TMPDIR/apt-get.log" ]
}
