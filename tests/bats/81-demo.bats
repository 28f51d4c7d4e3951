#!/usr/bin/env bats
# imgpipe demo: the bundled sample through the whole stack, its photographs served from
# the source tree's pieces only, and the output CSV printed one product a block.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	stack_start
	local out="$BATS_FILE_TMPDIR/demo.out" err="$BATS_FILE_TMPDIR/demo.err"
	imgpipe demo >"$out" 2>"$err" || { cat "$err" >&3; return 1; }
	BATCH=$(sed -n 's/^imgpipe: batch \([0-9a-f]*\) submitted$/\1/p' "$err")
	export BATCH
}

teardown_file() {
	stack_stop
}

# Product N's block of the demo's output.
block() { awk -v n="$1" '/^S\. No\./ { on = ($NF == n) } on' "$BATS_FILE_TMPDIR/demo.out"; }

@test "the demo's batch completes: 12 photos done, the missing one failed, a nameless row rejected" {
	run jq -r .message < <(imgpipe status "$BATCH")
	assert_output "10 rows (9 valid, 1 rejected), 13 images (12 done, 1 failed)"
}

@test "each valid product is one block, and no CSV quoting shows" {
	run grep -c '^S\. No\.' "$BATS_FILE_TMPDIR/demo.out"
	assert_output 9
	run grep -c '"' "$BATS_FILE_TMPDIR/demo.out"
	assert_output 0
}

@test "a product's URLs are one a line, as the status JSON has them" {
	json=$(imgpipe status "$BATCH")
	# product 3's input cell is "A, B" (a space after the comma) in samples/products.csv
	run block 3
	assert_output "$(jq -r --arg pad "$(printf '%19s' '')" '.products[] | select(.serial_no == 3) |
		"S. No.             3\nProduct Name       \(.product_name)\n"
		+ "Input Image Urls   \(.input_image_urls | join("\n" + $pad))\n"
		+ "Output Image Urls  \(.output_image_urls | join("\n" + $pad))"' <<<"$json")"
	run block 9
	assert_line --regexp '^Product Name +Missing Photo Poster$'
	assert_line --regexp '^Output Image Urls +-$'
}

@test "every output URL the demo prints opens without credentials" {
	while read -r url; do
		curl -sSf -o /dev/null "$url"
	done < <(grep -o "$S3_PUBLIC_URL/images/[0-9a-f]\{64\}-q50\.jpg" "$BATS_FILE_TMPDIR/demo.out")
	run grep -c "$S3_PUBLIC_URL/images/[0-9a-f]\{64\}-q50\.jpg" "$BATS_FILE_TMPDIR/demo.out"
	assert_output 12
}
