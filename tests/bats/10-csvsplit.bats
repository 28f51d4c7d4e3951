#!/usr/bin/env bats
# csvsplit: the CSV contract of docs/design.md ("Stage records").  Each test states the exact
# records (compacted by jq -c) or the exact exit status and message.  No servers needed.

load helpers
bats_require_minimum_version 1.5.0

D="$TESTDATA/csvsplit"
EXPECTED="expected the columns 'S. No.', 'Product Name' and 'Input Image Urls' in any order (case, spaces and punctuation ignored)"

# Runs csvsplit with the given arguments; output is its records compacted by jq -c, the
# status csvsplit's own; stderr apart.
records() {
	run --separate-stderr bash -c 'set -o pipefail; csvsplit "$@" | jq -c .' csvsplit "$@"
}

# Same, with standard input from the file $1.
records_stdin() {
	local file=$1
	shift
	run --separate-stderr bash -c 'set -o pipefail; csvsplit "$@" <"$0" | jq -c .' "$file" "$@"
}

# Writes printf-formatted text to $BATS_TEST_TMPDIR/in.csv.
csv() {
	# shellcheck disable=SC2059
	printf "$@" >"$BATS_TEST_TMPDIR/in.csv"
}

@test "valid rows: one record each, in file order, with the line of the row" {
	records "$D/basic.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Widget","input_image_urls":["https://img.example.com/w1.jpg"]}
{"line":3,"serial_no":2,"product_name":"Gadget, large","input_image_urls":["https://img.example.com/g1.jpg","https://img.example.com/g2.png","http://img.example.com/g3.webp"]}
{"line":4,"serial_no":3,"product_name":"The \"Best\" Lamp","input_image_urls":["http://img.example.com/lamp.jpg"]}
EOF
	assert_equal "$stderr" ""
}

@test "standard input when no FILE is given, and for -" {
	records "$D/basic.csv"
	expected=$output
	records_stdin "$D/basic.csv"
	assert_success
	assert_output "$expected"
	records_stdin "$D/basic.csv" -
	assert_success
	assert_output "$expected"
}

@test "quoted fields with newlines and doubled quotes; blank lines skipped; line is where the row starts" {
	records "$D/multiline.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Two\nline name","input_image_urls":["https://a.example/1.jpg","https://a.example/2.jpg"]}
{"line":6,"serial_no":2,"product_name":"After a blank line","input_image_urls":["https://a.example/3.jpg"]}
{"line":8,"serial_no":3,"product_name":"Three\n\"lines\"\nhere","input_image_urls":["https://a.example/4.jpg"]}
{"line":11,"serial_no":4,"product_name":"Last without a newline","input_image_urls":["https://a.example/5.jpg"]}
EOF
}

@test "a UTF-8 BOM and CRLF line ends, a CRLF inside a quoted field kept" {
	records "$D/bom-crlf.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Mug","input_image_urls":["https://a.example/m.jpg"]}
{"line":4,"serial_no":2,"product_name":"Cup\r\nset","input_image_urls":["https://a.example/c.jpg"]}
EOF
}

@test "header names match ignoring case, spaces and punctuation; Serial Number and serial_no accepted" {
	for header in 'S. No.,Product Name,Input Image Urls' \
		'serial_no,product_name,input_image_urls' \
		'Serial Number,PRODUCT NAME,input-image-urls' \
		'  s.no ,Product-Name,"Input Image URLs"' \
		'SNo,productname,InputImageUrls'; do
		csv '%s\n7,Pen,https://a.example/p.jpg\n' "$header"
		records "$BATS_TEST_TMPDIR/in.csv"
		assert_success
		assert_output '{"line":2,"serial_no":7,"product_name":"Pen","input_image_urls":["https://a.example/p.jpg"]}'
	done
}

@test "extra columns are ignored, in any order, and so are surplus fields when the URL column is not last" {
	records "$D/extra-columns.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":5,"product_name":"Pencil","input_image_urls":["https://a.example/x.jpg"]}
{"line":3,"serial_no":6,"product_name":"Eraser","input_image_urls":["https://a.example/y.jpg"]}
EOF
	records "$D/urls-not-last.csv"
	assert_success
	assert_output '{"line":2,"serial_no":1,"product_name":"Bowl","input_image_urls":["https://a.example/1.jpg"]}'
}

@test "URLs are split on commas and trimmed; when the URL column is last, surplus fields are more URLs" {
	records "$D/surplus-urls.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Brush","input_image_urls":["https://a.example/1.jpg","https://a.example/2.jpg","https://a.example/3.jpg"]}
{"line":3,"serial_no":2,"product_name":"Comb","input_image_urls":["https://a.example/4.jpg","https://a.example/5.jpg","https://a.example/6.jpg"]}
{"line":4,"serial_no":3,"product_name":"Tray","input_image_urls":["https://a.example/7.jpg","https://a.example/8.jpg"]}
EOF
}

@test "each invalid row says precisely why, and the exit status is still 0" {
	records "$D/invalid.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"error":"serial number 'abc' is not a positive integer"}
{"line":3,"error":"serial number '0' is not a positive integer"}
{"line":4,"error":"serial number '-3' is not a positive integer"}
{"line":5,"error":"serial number '1.5' is not a positive integer"}
{"line":6,"error":"serial number '99999999999999999999' is too large"}
{"line":7,"error":"serial number is empty"}
{"line":8,"serial_no":10,"product_name":"First","input_image_urls":["https://a.example/1.jpg"]}
{"line":9,"error":"serial number 10 was already used on line 8"}
{"line":10,"error":"product name is empty"}
{"line":11,"error":"product name is empty"}
{"line":12,"error":"no image URL"}
{"line":13,"error":"no image URL"}
{"line":14,"error":"image URL '/images/1.jpg' is not an absolute URL (Bad scheme)"}
{"line":15,"error":"image URL 'ftp://a.example/1.jpg' is not http or https"}
{"line":16,"error":"image URL 'https://' is not an absolute URL (No host part in the URL)"}
{"line":17,"error":"image URL 'mailto:x@a.example' is not an absolute URL (Unsupported number of slashes following scheme) (and 1 more bad image URL)"}
{"line":18,"error":"image URL 'https://a.example/a b.jpg' is not an absolute URL (Bad path)"}
{"line":19,"error":"serial number is empty; product name is empty; no image URL"}
{"line":20,"error":"product name is empty; no image URL"}
{"line":21,"error":"product name is empty"}
{"line":22,"serial_no":21,"product_name":"Claims 21","input_image_urls":["https://a.example/1.jpg"]}
{"line":23,"error":"image URL '2.jpg' is not an absolute URL (Bad scheme)"}
EOF
	assert_equal "$stderr" ""
}

@test "an image URL whose host is empty is refused however it is spelled" {
	# curl allows one or three slashes after the scheme and takes the host from the path
	# ("http:///x.jpg" as host x.jpg); a host of dots alone is no host either.
	while IFS='|' read -r url why; do
		printf 'S. No.,Product Name,Input Image Urls\n1,Pen,%s\n' "$url" >"$BATS_TEST_TMPDIR/in.csv"
		records "$BATS_TEST_TMPDIR/in.csv"
		assert_success
		assert_output "$(jq -cn --arg why "image URL '$url' $why" '{line: 2, error: $why}')"
		assert_equal "$stderr" ""
	done <<'EOF'
http:///x.jpg|has no host (3 slashes after 'http:', not 2)
http:/x.jpg|has no host (1 slash after 'http:', not 2)
HTTP:///x|has no host (3 slashes after 'HTTP:', not 2)
http://./x|has no host ('.' is not a host name)
http://%2e/x|has no host ('.' is not a host name)
http://../x|has no host ('..' is not a host name)
http://:80/x.jpg|is not an absolute URL (No host part in the URL)
http://@/x.jpg|is not an absolute URL (No host part in the URL)
http://user:pw@/x.jpg|is not an absolute URL (No host part in the URL)
https://?q|is not an absolute URL (No host part in the URL)
http://#f|is not an absolute URL (No host part in the URL)
http://%20/x|is not an absolute URL (Bad hostname)
http:x.jpg|is not an absolute URL (Unsupported number of slashes following scheme)
http:\\x|is not an absolute URL (Unsupported number of slashes following scheme)
https:////x|is not an absolute URL (Unsupported number of slashes following scheme)
EOF
	csv 'S. No.,Product Name,Input Image Urls\n1,Pen,http://a.example./x.jpg\n'
	records "$BATS_TEST_TMPDIR/in.csv"
	assert_output '{"line":2,"serial_no":1,"product_name":"Pen","input_image_urls":["http://a.example./x.jpg"]}'
}

@test "invalid UTF-8 or a NUL byte in any field makes the row invalid, naming the column" {
	records "$D/utf8.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Café ☕","input_image_urls":["https://a.example/café.jpg"]}
{"line":3,"error":"column 2 (Product Name) is not valid UTF-8"}
{"line":4,"error":"column 3 (Input Image Urls) is not valid UTF-8"}
{"line":5,"error":"column 4 is not valid UTF-8"}
{"line":6,"error":"column 2 (Product Name) contains a NUL byte"}
EOF
}

@test "a field over --max-field-bytes is an error for its row, also across lines; the next rows are read" {
	name32=$(printf 'x%.0s' {1..32})
	csv 'S. No.,Product Name,Input Image Urls\n1,%s,https://a.example/1.jpg\n2,%sy,https://a.example/2.jpg\n3,"multi\n%s\nline",https://a.example/3.jpg\n4,Fine,https://a.example/4.jpg\n' \
		"$name32" "$name32" "$name32"
	records --max-field-bytes 32 "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output - <<EOF
{"line":2,"serial_no":1,"product_name":"$name32","input_image_urls":["https://a.example/1.jpg"]}
{"line":3,"error":"column 2 (Product Name) is longer than 32 bytes (--max-field-bytes)"}
{"line":4,"error":"column 2 (Product Name) is longer than 32 bytes (--max-field-bytes)"}
{"line":7,"serial_no":4,"product_name":"Fine","input_image_urls":["https://a.example/4.jpg"]}
EOF
}

@test "the default field limit is 64 KiB: a 1 MiB field is an error, not a crash or a cut" {
	{
		printf 'S. No.,Product Name,Input Image Urls\n1,"'
		head -c 1048576 /dev/zero | tr '\0' 'n'
		printf '",https://a.example/1.jpg\n2,Next,https://a.example/2.jpg\n'
	} >"$BATS_TEST_TMPDIR/in.csv"
	records "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"error":"column 2 (Product Name) is longer than 65536 bytes (--max-field-bytes)"}
{"line":3,"serial_no":2,"product_name":"Next","input_image_urls":["https://a.example/2.jpg"]}
EOF
}

@test "more URLs than --max-urls is an error for the row" {
	csv 'S. No.,Product Name,Input Image Urls\n1,Two,"https://a.example/1.jpg,https://a.example/2.jpg"\n2,Three,https://a.example/1.jpg,https://a.example/2.jpg,https://a.example/3.jpg\n'
	records --max-urls 2 "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Two","input_image_urls":["https://a.example/1.jpg","https://a.example/2.jpg"]}
{"line":3,"error":"3 image URLs, over the limit of 2 (--max-urls)"}
EOF
}

@test "rows past --max-rows are each an error record, none dropped" {
	records --max-rows 2 "$D/multiline.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Two\nline name","input_image_urls":["https://a.example/1.jpg","https://a.example/2.jpg"]}
{"line":6,"serial_no":2,"product_name":"After a blank line","input_image_urls":["https://a.example/3.jpg"]}
{"line":8,"error":"row 3 is over the limit of 2 rows (--max-rows)"}
{"line":11,"error":"row 4 is over the limit of 2 rows (--max-rows)"}
EOF
}

@test "--batch ID stamps batch_id into every record, valid or not" {
	csv 'S. No.,Product Name,Input Image Urls\n1,Pen,https://a.example/p.jpg\n1,Pen again,https://a.example/p.jpg\n'
	records --batch b-42 "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":1,"product_name":"Pen","input_image_urls":["https://a.example/p.jpg"],"batch_id":"b-42"}
{"line":3,"error":"serial number 1 was already used on line 2","batch_id":"b-42"}
EOF
}

@test "--rank gives each valid row its place in serial order, from a file and from a pipe" {
	csv 'S. No.,Product Name,Input Image Urls\n30,C,https://a.example/c.jpg\n7,A,https://a.example/a.jpg\nx,Bad,https://a.example/x.jpg\n7,Twice,https://a.example/t.jpg\n12,B,https://a.example/b.jpg\n'
	records --rank --batch b "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output - <<'EOF'
{"line":2,"serial_no":30,"product_name":"C","input_image_urls":["https://a.example/c.jpg"],"rank":2,"batch_id":"b"}
{"line":3,"serial_no":7,"product_name":"A","input_image_urls":["https://a.example/a.jpg"],"rank":0,"batch_id":"b"}
{"line":4,"error":"serial number 'x' is not a positive integer","batch_id":"b"}
{"line":5,"error":"serial number 7 was already used on line 3","batch_id":"b"}
{"line":6,"serial_no":12,"product_name":"B","input_image_urls":["https://a.example/b.jpg"],"rank":1,"batch_id":"b"}
EOF
	expected=$output
	run --separate-stderr bash -c 'set -o pipefail; cat "$0" | csvsplit --rank --batch b | jq -c .' "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output "$expected"
	records_stdin "$BATS_TEST_TMPDIR/in.csv" --rank --batch b
	assert_output "$expected"
}

@test "--rank over 3,000 shuffled rows: the ranks are 0 to 2,999, each in the order of the serials" {
	python3 -c 'import random
s = list(range(5, 15005, 5)); random.shuffle(s)
print("S. No.,Product Name,Input Image Urls")
for n in s: print(f"{n},P{n},https://a.example/{n}.jpg")' >"$BATS_TEST_TMPDIR/in.csv"
	run --separate-stderr bash -c 'csvsplit --rank "$0" | jq -r "[.rank, .serial_no] | @tsv" | sort -n' "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output "$(for i in $(seq 0 2999); do printf '%d\t%d\n' "$i" $((5 * (i + 1))); done)"
}

@test "--rank on input that is not a product CSV: exit 65, nothing written" {
	run --separate-stderr bash -c 'printf "foo\n1,2\n" | csvsplit --rank'
	assert_failure 65
	assert_output ""
	assert_equal "$stderr" "csvsplit: standard input: the header (line 1) lacks the columns 'S. No.', 'Product Name' and 'Input Image Urls'; $EXPECTED"
}

@test "a header without a row gives no record and exit 0" {
	csv 'S. No.,Product Name,Input Image Urls\r\n\r\n'
	records "$BATS_TEST_TMPDIR/in.csv"
	assert_success
	assert_output ""
}

@test "a missing required column: exit 65 naming what is missing and what was expected" {
	csv 'S. No.,Name,Input Image Urls\n1,Pen,https://a.example/p.jpg\n'
	records "$BATS_TEST_TMPDIR/in.csv"
	assert_failure 65
	assert_output ""
	assert_equal "$stderr" "csvsplit: $BATS_TEST_TMPDIR/in.csv: the header (line 1) lacks the column 'Product Name'; $EXPECTED"
	csv 'Serial,Name,Urls\n'
	records_stdin "$BATS_TEST_TMPDIR/in.csv"
	assert_failure 65
	assert_equal "$stderr" "csvsplit: standard input: the header (line 1) lacks the columns 'S. No.', 'Product Name' and 'Input Image Urls'; $EXPECTED"
}

@test "a required column twice: exit 65" {
	csv 'S. No.,Product Name,product_name,Input Image Urls\n'
	records "$BATS_TEST_TMPDIR/in.csv"
	assert_failure 65
	assert_equal "$stderr" "csvsplit: $BATS_TEST_TMPDIR/in.csv: the header (line 1) has two 'Product Name' columns (2 and 3); $EXPECTED"
}

@test "empty input (nothing, a BOM alone, blank lines): exit 65" {
	for input in '' '\357\273\277' '\n \r\n\t\n'; do
		csv "$input"
		records_stdin "$BATS_TEST_TMPDIR/in.csv"
		assert_failure 65
		assert_output ""
		assert_equal "$stderr" "csvsplit: standard input: the input is empty; $EXPECTED"
	done
}

@test "input that is not text (an image, UTF-16, a NUL in the header): exit 65" {
	csv 'S. No.,Product\0Name,Input Image Urls\n'
	for file in "$D/binary.png" "$D/utf16.csv" "$BATS_TEST_TMPDIR/in.csv"; do
		records "$file"
		assert_failure 65
		assert_output ""
		assert_equal "$stderr" "csvsplit: $file: the input is not UTF-8 text (line 1, the header); $EXPECTED"
	done
}

@test "a header name over the field limit: exit 65" {
	csv 'S. No.,Product Name,Input Image Urls,A very long column name indeed\n'
	records --max-field-bytes 16 "$BATS_TEST_TMPDIR/in.csv"
	assert_failure 65
	assert_equal "$stderr" "csvsplit: $BATS_TEST_TMPDIR/in.csv: line 1: header column 4 is longer than 16 bytes; $EXPECTED"
}

@test "a header name exactly at the field limit with CRLF after it is accepted (fuzz regression)" {
	records --max-field-bytes 16 "$ROOT/tests/fuzz/regress/csv/header-field-at-limit-with-trailing-cr"
	assert_success
	assert_output - <<'EOF'
{"line":2,"error":"column 3 (Product Name) is longer than 16 bytes (--max-field-bytes); column 4 (Input Image Urls) is longer than 16 bytes (--max-field-bytes)"}
{"line":5,"error":"no image URL"}
EOF
}

@test "a row whose required fields are all bad, so none was kept, is an error record (fuzz regression)" {
	records "$ROOT/tests/fuzz/regress/csv/serial-missing-before-any-text"
	assert_success
	assert_output '{"line":2,"error":"column 1 (S. No.) contains a NUL byte; column 2 (Product Name) contains a NUL byte; column 3 (Input Image Urls) is not valid UTF-8"}'
}

@test "usage errors exit 64: bad limits, unknown options, two files, an empty batch id" {
	for args in "--max-urls 0" "--max-field-bytes 8" "--max-rows x" "--nope" "--batch=" "a.csv b.csv"; do
		# shellcheck disable=SC2086
		run --separate-stderr csvsplit $args
		assert_failure 64
	done
	run --separate-stderr csvsplit --max-urls 0
	assert_equal "$stderr" "csvsplit: --max-urls wants a whole number from 1 to 100000, not '0'"
}

@test "a missing file exits 66" {
	run --separate-stderr csvsplit "$BATS_TEST_TMPDIR/none.csv"
	assert_failure 66
	assert_equal "$stderr" "csvsplit: $BATS_TEST_TMPDIR/none.csv: No such file or directory"
}

@test "--help lists every option of the man page, --version prints the version" {
	run csvsplit --help
	assert_success
	assert_line --index 0 "usage: csvsplit [--batch ID] [--rank] [--max-field-bytes N] [--max-urls N] [--max-rows N]"
	for opt in --batch --rank --max-field-bytes --max-urls --max-rows; do
		assert_output --partial "  $opt "
		# the man page writes each - of an option as \-, after .BI (with an argument) or .B
		grep -qE -- "^\.BI? ${opt//-/\\\\-}( |\$)" "$ROOT/tools/csvsplit/csvsplit.1" ||
			fail "$opt is not in csvsplit.1"
	done
	run csvsplit --version
	assert_success
	assert_output --regexp '^csvsplit [0-9]+\.[0-9]+\.[0-9]+$'
}
