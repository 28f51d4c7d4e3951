#!/usr/bin/env bats
# make install puts a working copy under PREFIX (staged in DESTDIR), with the version of
# the Makefile everywhere, and nothing of the tests.

load helpers

setup_file() {
	export DEST="$BATS_FILE_TMPDIR/dest"
	make -s -C "$ROOT" install DESTDIR="$DEST" PREFIX=/opt/imgpipe-test >&3
	export P="$DEST/opt/imgpipe-test"
	VERSION=$(make -s --no-print-directory -C "$ROOT" print-version)
	export VERSION
}

@test "every program and man page is installed, each with the Makefile's version" {
	[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]
	for prog in csvsplit fetchimg shrink s3put s3get dbrecord notify imgpipe-dispatch imgpipe; do
		run "$P/bin/$prog" --version
		assert_success
		assert_output "$prog $VERSION"
		[ -f "$P/share/man/man1/$prog.1" ]
	done
	[ -x "$P/lib/imgpipe/bin/imgpipe.cgi" ]
	[ -f "$P/share/man/man1/imgpipe.cgi.1" ]
	sources=("$ROOT"/man/*.1 "$ROOT"/tools/*/*.1 "$ROOT"/dispatch/*.1 "$ROOT"/cgi/*.1)
	pages=("$P"/share/man/man1/*.1)
	assert_equal "${#pages[@]}" "${#sources[@]}"
	for page in "${pages[@]}"; do
		run head -n 1 "$page"
		assert_output --regexp "^\.TH [A-Z0-9.-]+ 1 .* \"imgpipe $VERSION\" "
	done
}

@test "a man page's source names no version, only the placeholder make fills in" {
	for page in "$ROOT"/man/*.1 "$ROOT"/tools/*/*.1 "$ROOT"/dispatch/*.1 "$ROOT"/cgi/*.1; do
		run head -n 1 "$page"
		assert_output --partial '"imgpipe @VERSION@"'
		run grep -c -E '[0-9]+\.[0-9]+\.[0-9]+' <(head -n 1 "$page")
		assert_output 0
	done
}

@test "the installed imgpipe finds its own files, and the dispatcher its process-batch" {
	run env -u IMGPIPE_HOME IMGPIPE_PORT_BASE=17000 "$P/bin/imgpipe" stack env
	assert_line "export MONGODB_URI=mongodb://127.0.0.1:17002/imgpipe"
	assert_line "export IMGPIPE_HOME=$P/lib/imgpipe/var"
	run "$P/bin/imgpipe" setup --print
	assert_success
	assert_output "$("$ROOT/scripts/setup" --print)"
	run "$P/bin/imgpipe" demo --help
	assert_output "usage: imgpipe demo"
	# a dispatcher that cannot find its runner exits at once with 64; this one gets as far as Redis
	run timeout 1 env REDIS_URL=redis://127.0.0.1:1 "$P/bin/imgpipe-dispatch"
	assert_output --partial "Connection refused"
}

@test "nothing of the tests is installed; the demo brings its own pieces" {
	run bash -c 'cd "$P" && find . -path "*test*" -o -name "*.py"'
	assert_output ""
	for file in scripts/demo scripts/sample-photos; do
		[ -x "$P/lib/imgpipe/$file" ]
	done
	cmp "$ROOT/samples/products.csv" "$P/lib/imgpipe/samples/products.csv"
}
