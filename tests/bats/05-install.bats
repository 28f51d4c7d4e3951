#!/usr/bin/env bats
# make install puts a working copy under PREFIX (staged in DESTDIR).

load helpers

setup_file() {
	export DEST="$BATS_FILE_TMPDIR/dest"
	make -s -C "$ROOT" install DESTDIR="$DEST" PREFIX=/opt/imgpipe-test >&3
	export P="$DEST/opt/imgpipe-test"
}

@test "every program and man page is installed, and each program answers --version" {
	for prog in csvsplit fetchimg shrink s3put s3get dbrecord notify imgpipe-dispatch imgpipe; do
		run "$P/bin/$prog" --version
		assert_success
		assert_output --regexp "^$prog 0\.1\.0$"
		[ -f "$P/share/man/man1/$prog.1" ]
	done
	[ -x "$P/lib/imgpipe/bin/imgpipe.cgi" ]
	[ -f "$P/share/man/man1/imgpipe.cgi.1" ]
}

@test "the installed imgpipe finds its own files, and the dispatcher its process-batch" {
	run env -u IMGPIPE_HOME IMGPIPE_PORT_BASE=17000 "$P/bin/imgpipe" stack env
	assert_line "export MONGODB_URI=mongodb://127.0.0.1:17002/imgpipe"
	assert_line "export IMGPIPE_HOME=$P/lib/imgpipe/var"
	# a dispatcher that cannot find its runner exits at once with 64; this one gets as far as Redis
	run timeout 1 env REDIS_URL=redis://127.0.0.1:1 "$P/bin/imgpipe-dispatch"
	assert_output --partial "Connection refused"
}
