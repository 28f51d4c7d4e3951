#!/usr/bin/env bats
# shrink: libvips recompression at quality 50, format kept, orientation applied, metadata
# stripped; images refused from their header (bombs, empty files, non-images) and failed on
# corrupt data; record mode and IN OUT mode.  Fixtures are made here with ImageMagick,
# exiftool and vips; the decompression bomb is a real 40000x40000 PNG of 190 KB.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	# Under AddressSanitizer: third-party one-time allocations are not our leaks.
	export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp}"
	export D="$BATS_FILE_TMPDIR/in"
	mkdir -p "$D"
	cd "$D" || return 1
	# A photo-like plasma and a picture of four coloured quadrants (to see rotations).
	convert -size 400x250 -seed 7 plasma:fractal -quality 92 photo.jpg
	convert -size 200x125 xc:red xc:lime +append \( xc:blue xc:white +append \) -append \
		-quality 95 quad.jpg
	cp quad.jpg rotated.jpg
	exiftool -q -n -overwrite_original -Orientation=6 -Artist=someone -XMP-dc:Creator=someone rotated.jpg
	convert photo.jpg -colorspace CMYK cmyk.jpg
	vips icc_transform photo.jpg cmyk-profile.jpg cmyk --input-profile srgb
	vips icc_transform quad.jpg p3.jpg p3 --input-profile srgb
	vips icc_transform quad.jpg srgb.jpg srgb --input-profile srgb
	convert photo.jpg -colorspace Gray grey.jpg
	convert photo.jpg -interlace Plane progressive.jpg
	# opaque on top, transparent below
	convert photo.jpg \( -size 400x125 xc:white xc:black -append \) -alpha off \
		-compose CopyOpacity -composite alpha.png
	convert photo.jpg -quality 90 photo.webp
	convert -delay 20 -size 120x90 xc:red xc:lime xc:blue -loop 0 anim.gif
	convert -size 1000x1000 xc:red xc:blue two-frames.gif
	vips copy photo.jpg photo.avif
	vips copy photo.jpg photo.heic
	head -c "$(($(stat -c %s photo.jpg) / 2))" photo.jpg >half.jpg
	printf 'just some text, not a picture\n' >text.jpg
	: >empty.jpg
	convert photo.jpg photo.tif
	vips black "bomb.png[bitdepth=1,compression=9]" 40000 40000
	# Images that cannot get smaller: a JPEG saved at quality 20 (with some EXIF and a
	# comment), the same progressive, and a 1x1 PNG saved at the highest compression.
	convert -size 400x250 pattern:checkerboard checker.png
	vips jpegsave checker.png q20.jpg --Q 20 --optimize-coding --strip
	vips jpegsave checker.png q20-progressive.jpg --Q 20 --optimize-coding --strip --interlace
	exiftool -q -overwrite_original -Artist=someone -Comment=hello -GPSLatitude=48.8 \
		-GPSLatitudeRef=N q20.jpg q20-progressive.jpg
	convert -size 1x1 xc:red -strip -define png:compression-level=9 tiny.png
}

setup() {
	OUT="$BATS_TEST_TMPDIR/out"
	mkdir -p "$OUT"
	cd "$BATS_TEST_TMPDIR" || return 1
}

# field FILE NAME: one header field as libvips reads it.
field() {
	vipsheader -f "$2" "$1"
}

# rgb FILE X Y: the pixel at X,Y as "R G B", each rounded to a multiple of 64 (JPEG is lossy).
rgb() {
	vips getpoint "$1" "$2" "$3" | awk '{ for (i = 1; i <= 3; i++) printf "%s%d", (i > 1 ? " " : ""), int(($i + 32) / 64) * 64; print "" }'
}

# ---- the command line ----

@test "--help and --version, and every option of --help is in the man page" {
	run shrink --help
	assert_success
	assert_line --partial "usage: shrink"
	for opt in --quality --format --scale --max-pixels --out-dir; do
		assert_output --partial -- "$opt"
		grep -q -- "${opt//-/\\\\-}" "$ROOT/tools/shrink/shrink.1"
	done
	run shrink --version
	assert_success
	assert_output --regexp '^shrink [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "usage errors exit 64" {
	for args in "-q 0" "-q 101" "-q x" "--format bmp" "--scale 0" "--scale 1.5" "--scale x" \
		"--max-pixels 0" "$D/photo.jpg" "$D/photo.jpg a.jpg b.jpg" "--out-dir /nonexistent" \
		"--out-dir $OUT $D/photo.jpg a.jpg" "--bogus"; do
		# shellcheck disable=SC2086
		run shrink $args </dev/null
		assert_failure 64
	done
	# TIFF is a format of the pipeline (fetchimg takes it) but not one shrink writes.
	run shrink --format tiff "$D/photo.jpg" "$OUT/x.tif"
	assert_failure 64
	assert_line --index 0 "shrink: unknown --format 'tiff'"
}

# ---- JPEG ----

@test "JPEG: quality 50 by default, -q sets it, metadata stripped, a smaller file" {
	run shrink "$D/photo.jpg" "$OUT/photo.jpg"
	assert_success
	assert_equal "$(identify -format %Q "$OUT/photo.jpg")" 50
	assert [ "$(stat -c %s "$OUT/photo.jpg")" -lt "$(stat -c %s "$D/photo.jpg")" ]
	run shrink -q 80 "$D/photo.jpg" "$OUT/q80.jpg"
	assert_success
	assert_equal "$(identify -format %Q "$OUT/q80.jpg")" 80
}

@test "JPEG: Huffman tables are optimised (same pixels as standard tables, fewer bytes)" {
	shrink "$D/photo.jpg" "$OUT/optimised.jpg"
	vips jpegsave "$D/photo.jpg" "$OUT/standard.jpg" --Q 50 --strip
	djpeg "$OUT/optimised.jpg" >"$OUT/a.ppm"
	djpeg "$OUT/standard.jpg" >"$OUT/b.ppm"
	cmp "$OUT/a.ppm" "$OUT/b.ppm"
	assert [ "$(stat -c %s "$OUT/optimised.jpg")" -lt "$(stat -c %s "$OUT/standard.jpg")" ]
}

@test "EXIF orientation is applied, then EXIF and XMP are stripped" {
	assert_equal "$(exiftool -s -s -s -n -Orientation "$D/rotated.jpg")" 6
	run shrink "$D/rotated.jpg" "$OUT/r.jpg"
	assert_success
	assert_equal "$(field "$OUT/r.jpg" width)x$(field "$OUT/r.jpg" height)" 250x400
	# Turned 90 degrees clockwise: red (top left) is now top right, blue top left.
	assert_equal "$(rgb "$OUT/r.jpg" 240 10)" "256 0 0"
	assert_equal "$(rgb "$OUT/r.jpg" 10 10)" "0 0 256"
	assert_equal "$(exiftool -s -s -s -Orientation -Artist -XMP:all "$OUT/r.jpg")" ""
	run vipsheader -a "$OUT/r.jpg"
	refute_output --partial exif-data
	refute_output --partial xmp-data
}

@test "CMYK JPEG, with or without a profile, becomes sRGB with its colours" {
	for f in cmyk cmyk-profile; do
		run vipsheader "$D/$f.jpg"
		assert_output --partial "uchar, 4 bands, cmyk, jpegload"
		run shrink "$D/$f.jpg" "$OUT/$f.jpg"
		assert_success
		run vipsheader "$OUT/$f.jpg"
		assert_output --partial "uchar, 3 bands, srgb, jpegload"
		assert_equal "$(rgb "$OUT/$f.jpg" 200 125)" "$(rgb "$D/photo.jpg" 200 125)"
	done
}

@test "an embedded ICC profile (Display P3, sRGB) is applied and stripped" {
	for f in p3 srgb; do
		run vipsheader -a "$D/$f.jpg"
		assert_output --partial icc-profile-data
		run shrink "$D/$f.jpg" "$OUT/$f.jpg"
		assert_success
		run vipsheader -a "$OUT/$f.jpg"
		refute_output --partial icc-profile-data
		assert_equal "$(rgb "$OUT/$f.jpg" 10 10)" "256 0 0"
		assert_equal "$(rgb "$OUT/$f.jpg" 390 10)" "0 256 0"
	done
}

@test "grey JPEG stays grey" {
	run shrink "$D/grey.jpg" "$OUT/grey.jpg"
	assert_success
	run vipsheader "$OUT/grey.jpg"
	assert_output --partial "uchar, 1 band, b-w, jpegload"
}

@test "progressive JPEG is read whole and written as baseline" {
	assert_equal "$(exiftool -s -s -s -EncodingProcess "$D/progressive.jpg")" "Progressive DCT, Huffman coding"
	run shrink "$D/progressive.jpg" "$OUT/p.jpg"
	assert_success
	assert_equal "$(exiftool -s -s -s -EncodingProcess "$OUT/p.jpg")" "Baseline DCT, Huffman coding"
	assert_equal "$(field "$OUT/p.jpg" width)x$(field "$OUT/p.jpg" height)" 400x250
	assert_equal "$(identify -format %Q "$OUT/p.jpg")" 50
}

# ---- the other formats ----

@test "PNG with alpha: palette-quantised, alpha kept, smaller" {
	run shrink "$D/alpha.png" "$OUT/alpha.png"
	assert_success
	assert_equal "$(exiftool -s -s -s -ColorType "$OUT/alpha.png")" "Palette"
	assert_equal "$(field "$OUT/alpha.png" bands)" 4
	assert_equal "$(vips getpoint "$OUT/alpha.png" 200 0 | awk '{print $4}')" 255
	assert_equal "$(vips getpoint "$OUT/alpha.png" 200 249 | awk '{print $4}')" 0
	assert [ "$(stat -c %s "$OUT/alpha.png")" -lt "$(stat -c %s "$D/alpha.png")" ]
}

@test "PNG with alpha to JPEG: transparent parts become white" {
	run shrink --format jpeg "$D/alpha.png" "$OUT/alpha.jpg"
	assert_success
	assert_equal "$(field "$OUT/alpha.jpg" bands)" 3
	assert_equal "$(rgb "$OUT/alpha.jpg" 200 249)" "256 256 256"
}

@test "WebP stays WebP at quality 50, smaller" {
	run shrink "$D/photo.webp" "$OUT/photo.webp"
	assert_success
	assert_equal "$(field "$OUT/photo.webp" vips-loader)" webpload
	assert [ "$(stat -c %s "$OUT/photo.webp")" -lt "$(stat -c %s "$D/photo.webp")" ]
}

@test "AVIF stays AVIF, HEIF stays HEIF" {
	run shrink "$D/photo.avif" "$OUT/photo.avif"
	assert_success
	assert_equal "$(field "$OUT/photo.avif" heif-compression)" av1
	run shrink "$D/photo.heic" "$OUT/photo"
	assert_success
	assert_equal "$(field "$OUT/photo" heif-compression)" hevc
	echo "{\"file\": \"$D/photo.avif\"}" | shrink --out-dir "$OUT" >out.ndjson
	assert_equal "$(jq -r '.format + " " + .output_file' out.ndjson)" "avif $OUT/photo-1.avif"
}

@test "animated GIF keeps its frames; to WebP it stays animated; to JPEG it keeps the first" {
	run shrink "$D/anim.gif" "$OUT/anim.gif"
	assert_success
	assert_equal "$(field "$OUT/anim.gif[n=-1]" n-pages) $(field "$OUT/anim.gif[n=-1]" page-height)" "3 90"
	assert_equal "$(field "$OUT/anim.gif" vips-loader)" gifload
	run shrink --format webp "$D/anim.gif" "$OUT/anim.webp"
	assert_success
	assert_equal "$(field "$OUT/anim.webp[n=-1]" n-pages) $(field "$OUT/anim.webp[n=-1]" page-height)" "3 90"
	run shrink "$D/anim.gif" "$OUT/anim.jpg"
	assert_success
	assert_equal "$(field "$OUT/anim.jpg" width)x$(field "$OUT/anim.jpg" height)" 120x90
	assert_equal "$(rgb "$OUT/anim.jpg" 60 45)" "256 0 0"
}

@test "--scale resizes, every frame of an animation alike" {
	run shrink --scale 0.5 "$D/photo.jpg" "$OUT/half.jpg"
	assert_success
	assert_equal "$(field "$OUT/half.jpg" width)x$(field "$OUT/half.jpg" height)" 200x125
	run shrink --scale 0.5 "$D/anim.gif" "$OUT/anim.gif"
	assert_success
	assert_equal "$(field "$OUT/anim.gif[n=-1]" width) $(field "$OUT/anim.gif[n=-1]" n-pages) $(field "$OUT/anim.gif[n=-1]" page-height)" "60 3 45"
}

@test "IN OUT takes the format from OUT's suffix unless --format says otherwise" {
	shrink "$D/photo.jpg" "$OUT/a.webp"
	assert_equal "$(field "$OUT/a.webp" vips-loader)" webpload
	shrink --format png "$D/photo.jpg" "$OUT/b.webp"
	assert_equal "$(field "$OUT/b.webp" vips-loader)" pngload
	shrink "$D/photo.jpg" "$OUT/c"
	assert_equal "$(field "$OUT/c" vips-loader)" jpegload
	shrink "$D/photo.webp" "$OUT/d.tif"    # a suffix of a format shrink does not write
	assert_equal "$(field "$OUT/d.tif" vips-loader)" webpload
}

# ---- refusals, before decoding ----

@test "a decompression bomb is refused from its header" {
	assert [ "$(stat -c %s "$D/bomb.png")" -lt 300000 ]
	run shrink "$D/bomb.png" "$OUT/bomb.png"
	assert_failure 65
	assert_output "shrink: $D/bomb.png: decompression bomb refused: 40000x40000 is 1600 megapixels, over --max-pixels 100"
	assert [ ! -e "$OUT/bomb.png" ]
}

@test "--max-pixels counts every frame of an animation" {
	run shrink --max-pixels 1 "$D/two-frames.gif" "$OUT/x.gif"
	assert_failure 65
	assert_output "shrink: $D/two-frames.gif: decompression bomb refused: 2 frames of 1000x1000 are 2 megapixels, over --max-pixels 1"
	run shrink --max-pixels 2 "$D/two-frames.gif" "$OUT/x.gif"
	assert_success
}

@test "a JPEG cut in half fails instead of coming out half grey" {
	run shrink "$D/half.jpg" "$OUT/half.jpg"
	assert_failure 65
	assert_line "shrink: $D/half.jpg: truncated or corrupt JPEG: Premature end of input file"
	assert [ ! -e "$OUT/half.jpg" ]
}

@test "a text file named .jpg, an empty file, a missing file, TIFF are refused" {
	run shrink "$D/text.jpg" "$OUT/x.jpg"
	assert_failure 65
	assert_output "shrink: $D/text.jpg: not an image"
	run shrink "$D/empty.jpg" "$OUT/x.jpg"
	assert_failure 65
	assert_output "shrink: $D/empty.jpg: empty file"
	run shrink "$D/missing.jpg" "$OUT/x.jpg"
	assert_failure 65
	assert_output "shrink: $D/missing.jpg: cannot open $D/missing.jpg: No such file or directory"
	run shrink "$D/photo.tif" "$OUT/x.tif"
	assert_failure 65
	assert_output "shrink: $D/photo.tif: unsupported image format (tiffload): shrink reads JPEG, PNG, WebP, GIF, AVIF and HEIF"
	assert [ ! -e "$OUT/x.jpg" ]
}

@test "never overwrites its input" {
	cp "$D/photo.jpg" in.jpg
	sum=$(sha256sum <in.jpg)
	run shrink in.jpg in.jpg
	assert_failure 64
	assert_output "shrink: in.jpg: in.jpg is the input; shrink never overwrites its input"
	ln in.jpg link.jpg
	run shrink in.jpg link.jpg
	assert_failure 64
	echo '{"file": "in.jpg"}' | shrink --out-dir .
	assert_equal "$(sha256sum <in.jpg)" "$sum"
	assert [ -s in-1.jpg ]
}

@test "IN OUT: a failure leaves OUT as it was; OUT must be a regular file in a directory that exists" {
	cp "$D/photo.jpg" old.jpg
	run shrink "$D/half.jpg" old.jpg
	assert_failure 65
	cmp "$D/photo.jpg" old.jpg
	assert_equal "$(echo old.jpg*)" old.jpg
	run shrink "$D/photo.jpg" /dev/null
	assert_failure 73
	assert_output "shrink: $D/photo.jpg: /dev/null is not a regular file"
	run shrink "$D/photo.jpg" nodir/x.jpg
	assert_failure 73
	assert_output "shrink: $D/photo.jpg: cannot create nodir/x.jpg: No such file or directory"
}

# ---- record mode ----

@test "records gain output_file, output_bytes, format, width, height, settings; others pass untouched" {
	cp "$D/photo.jpg" "$D/anim.gif" "$D/alpha.png" .
	run --separate-stderr shrink --out-dir "$OUT" <<-EOF
		{"file": "photo.jpg", "batch_id": "b1", "serial_no": 1, "index": 0, "x": [1, 2]}
		{"file": "anim.gif", "output_file": "stale", "format": "stale"}
		{"file": "alpha.png"}
		{"file": "photo.jpg", "error": "fetch failed"}
		{"url": "http://example.com/a.jpg"}
	EOF
	assert_success
	assert_equal "${#lines[@]}" 5
	bytes=$(stat -c %s "$OUT/photo.jpg")
	assert_equal "${lines[0]}" "{ \"file\" : \"photo.jpg\", \"batch_id\" : \"b1\", \"serial_no\" : 1, \"index\" : 0, \"x\" : [ 1, 2 ], \"output_file\" : \"$OUT/photo.jpg\", \"output_bytes\" : $bytes, \"format\" : \"jpeg\", \"width\" : 400, \"height\" : 250, \"settings\" : \"q50\" }"
	assert_equal "$(jq -c '[.output_file, .format, .width, .height]' <<<"${lines[1]}")" "[\"$OUT/anim.gif\",\"gif\",120,90]"
	assert_equal "$(jq -c '[.output_file, .format]' <<<"${lines[2]}")" "[\"$OUT/alpha.png\",\"png\"]"
	assert_equal "${lines[3]}" '{"file": "photo.jpg", "error": "fetch failed"}'
	assert_equal "${lines[4]}" '{"url": "http://example.com/a.jpg"}'
}

@test "records: bad images get an error each and the stream goes on" {
	run --separate-stderr shrink --out-dir "$OUT" <<-EOF
		{"file": "$D/bomb.png", "index": 1}
		{"file": "$D/half.jpg"}
		{"file": "$D/text.jpg"}
		{"file": "$D/empty.jpg"}
		{"file": 7}
		{"file": "$D/photo.jpg"}
	EOF
	assert_success
	assert_equal "$(jq -r .error <<<"${lines[0]}")" "shrink: decompression bomb refused: 40000x40000 is 1600 megapixels, over --max-pixels 100"
	assert_equal "$(jq -c . <<<"${lines[0]}")" "{\"file\":\"$D/bomb.png\",\"index\":1,\"error\":\"shrink: decompression bomb refused: 40000x40000 is 1600 megapixels, over --max-pixels 100\"}"
	assert_equal "$(jq -r .error <<<"${lines[1]}")" "shrink: truncated or corrupt JPEG: Premature end of input file"
	assert_equal "$(jq -r .error <<<"${lines[2]}")" "shrink: not an image"
	assert_equal "$(jq -r .error <<<"${lines[3]}")" "shrink: empty file"
	assert_equal "$(jq -r .error <<<"${lines[4]}")" 'shrink: "file" is not a string'
	assert_equal "$(jq -r .format <<<"${lines[5]}")" jpeg
	assert_equal "$(ls "$OUT")" photo.jpg
}

@test "records: a line that is not JSON becomes an error record, later ones still run, exit 65" {
	run --separate-stderr shrink --out-dir "$OUT" <<-EOF
		not json
		{"file": "$D/photo.jpg"}
	EOF
	assert_failure 65
	assert_equal "$(jq -r .input_line <<<"${lines[0]}")" 1
	assert_line --index 0 --partial '"error" : "shrink: input line 1 is not a JSON object'
	assert_equal "$(jq -r .output_file <<<"${lines[1]}")" "$OUT/photo.jpg"
}

@test "records: output names come from the input's basename, unique, with the format's suffix" {
	mkdir a b
	cp "$D/photo.jpg" a/pic.jpg
	cp "$D/photo.jpg" b/pic.jpg
	cp "$D/alpha.png" a/noext
	printf '{"file": "%s"}\n' a/pic.jpg b/pic.jpg a/noext | shrink --out-dir "$OUT/" >out.ndjson
	assert_equal "$(jq -r .output_file out.ndjson)" "$OUT/pic.jpg
$OUT/pic-1.jpg
$OUT/noext.png"
	printf '{"file": "%s"}\n' a/pic.jpg | shrink --format webp --out-dir "$OUT" >out.ndjson
	assert_equal "$(jq -r '.output_file + " " + .format' out.ndjson)" "$OUT/pic.webp webp"
	assert_equal "$(field "$OUT/pic.webp" vips-loader)" webpload
}

@test "records: --out-dir defaults to the current directory" {
	cp "$D/photo.jpg" "$OUT/in.jpg"
	cd "$OUT"
	run --separate-stderr shrink <<<'{"file": "in.jpg"}'
	assert_success
	assert_equal "$(jq -r .output_file <<<"$output")" ./in-1.jpg
	assert [ -s in-1.jpg ]
}

@test "records: settings name what shaped the output, the format and scale only when not the defaults" {
	cp "$D/photo.jpg" "$D/alpha.png" .
	settings() { shrink --out-dir "$OUT" "$@" <<<'{"file": "photo.jpg"}' | jq -r .settings; }
	assert_equal "$(settings)" q50
	assert_equal "$(settings -q 80)" q80
	assert_equal "$(settings --format webp)" q50-webp
	assert_equal "$(settings --format jpg)" q50
	assert_equal "$(settings --scale 0.5)" q50-s0.5
	assert_equal "$(settings -q 80 --format png --scale 0.25)" q80-png-s0.25
	assert_equal "$(shrink --out-dir "$OUT" --format jpeg <<<'{"file": "alpha.png"}' | jq -r .settings)" q50-jpeg
	# A record from an earlier run: its stale fields are replaced.
	run shrink --out-dir "$OUT" <<<'{"file": "photo.jpg", "settings": "stale", "kept": "source"}'
	assert_equal "$(jq -c '[.settings, .kept]' <<<"$output")" '["q50",null]'
}

# ---- never larger than the source ----

@test "a JPEG that would grow is kept: the same pixels, its metadata stripped losslessly" {
	for f in q20 q20-progressive; do
		# The test images qualify: quality 50 makes them larger.
		vips jpegsave "$D/$f.jpg" "$OUT/q50.jpg" --Q 50 --optimize-coding --strip
		assert [ "$(stat -c %s "$OUT/q50.jpg")" -gt "$(stat -c %s "$D/$f.jpg")" ]
		assert_equal "$(exiftool -s -s -s -Artist -Comment -GPSLatitude "$D/$f.jpg" | wc -l)" 3
		run --separate-stderr shrink --out-dir "$OUT" <<<"{\"file\": \"$D/$f.jpg\"}"
		assert_success
		kept=$(jq -r .output_file <<<"$output")
		assert_equal "$(jq -c '[.kept, .settings, .format, .width, .height]' <<<"$output")" '["source","q50","jpeg",400,250]'
		assert_equal "$(jq -r .output_bytes <<<"$output")" "$(stat -c %s "$kept")"
		assert [ "$(stat -c %s "$kept")" -lt "$(stat -c %s "$D/$f.jpg")" ]
		cmp <(djpeg "$D/$f.jpg") <(djpeg "$kept")
		assert_equal "$(exiftool -s -s -s -Artist -Comment -GPSLatitude -XMP:all "$kept")" ""
		assert_equal "$(exiftool -s -s -s -EncodingProcess "$kept")" "$(exiftool -s -s -s -EncodingProcess "$D/$f.jpg")"
	done
	# IN OUT alike.
	run shrink "$D/q20.jpg" "$OUT/pair.jpg"
	assert_success
	cmp <(djpeg "$D/q20.jpg") <(djpeg "$OUT/pair.jpg")
	assert_equal "$(exiftool -s -s -s -Artist "$OUT/pair.jpg")" ""
}

@test "a PNG that would grow is kept byte for byte" {
	run --separate-stderr shrink --out-dir "$OUT" <<<"{\"file\": \"$D/tiny.png\"}"
	assert_success
	assert_equal "$(jq -c '[.kept, .format, .output_bytes]' <<<"$output")" "[\"source\",\"png\",$(stat -c %s "$D/tiny.png")]"
	cmp "$D/tiny.png" "$(jq -r .output_file <<<"$output")"
}

@test "with --format or --scale the source is never kept: it is not what was asked for" {
	run --separate-stderr shrink --out-dir "$OUT" --format webp <<<"{\"file\": \"$D/q20.jpg\"}"
	assert_equal "$(jq -c '[.kept, .format, .settings]' <<<"$output")" '[null,"webp","q50-webp"]'
	run --separate-stderr shrink --out-dir "$OUT" --scale 0.99 <<<"{\"file\": \"$D/q20.jpg\"}"
	assert_equal "$(jq -c '[.kept, .width, .settings]' <<<"$output")" '[null,396,"q50-s0.99"]'
}
