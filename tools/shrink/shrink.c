/* shrink: recompresses images with libvips, at quality 50 unless told otherwise, in the
 * format they came in (or --format), with EXIF orientation applied and metadata stripped.
 * NDJSON records with "file" gain output_file, output_bytes, format, width, height and
 * settings; "shrink IN OUT" does one file.  Every image is judged from its header before a
 * pixel is decoded (too many pixels, empty files and non-images are refused), and a decode
 * error fails the image instead of leaving a half-grey one behind.  An output is never
 * larger than its source: when it would be, the source is kept (see keep_source). */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <vips/vips.h>

#include "format.h"
#include "stage.h"

static const char usage[] =
	"usage: shrink [-q QUALITY] [--format FORMAT] [--scale FACTOR] [--max-pixels MP]\n"
	"              [--out-dir DIR]\n"
	"       shrink [-q QUALITY] [--format FORMAT] [--scale FACTOR] [--max-pixels MP] IN OUT\n"
	"Recompresses images at a lower quality with libvips, in their own format unless\n"
	"--format says otherwise; EXIF orientation is applied and metadata stripped.\n"
	"Reads NDJSON records with \"file\" on stdin, writes each image into DIR and adds\n"
	"output_file, output_bytes, format, width, height and settings; with IN OUT, shrinks\n"
	"one file.  An output that would be larger than its source is the source instead\n"
	"(\"kept\": \"source\"), a JPEG's metadata stripped losslessly.\n"
	"  -q, --quality QUALITY  1 to 100 (default 50)\n"
	"  --format FORMAT        jpeg, png, webp, gif, avif or heif (default: the input's)\n"
	"  --scale FACTOR         resize by FACTOR, over 0 and at most 1 (default 1)\n"
	"  --max-pixels MP        refuse images over MP megapixels, all frames (default 100)\n"
	"  --out-dir DIR          where records' outputs go (default: the current directory)\n";

struct options {
	int quality;
	const struct image_format *format;   /* NULL: keep the input's */
	double scale;
	long max_mp;
	const char *out_dir;
};

typedef int (*saver)(VipsImage *img, const char *path, int quality);

/* What became of one image. */
struct result {
	char *path;
	const struct image_format *format;
	int64_t bytes;
	int width, height;      /* of one frame */
	int kept_source;        /* the output is the source (keep_source) */
	char settings[64];      /* what shaped the output (settings_name) */
};

/* ---- the savers: each at the given quality, with metadata stripped ---- */

/* Optimised Huffman tables cost one more pass and save several per cent. */
static int save_jpeg(VipsImage *img, const char *path, int q)
{
	return vips_jpegsave(img, path, "Q", q, "optimize_coding", TRUE, "strip", TRUE, NULL);
}

/* Quality is libimagequant's target for the 256-colour palette. */
static int save_png(VipsImage *img, const char *path, int q)
{
	return vips_pngsave(img, path, "palette", TRUE, "Q", q, "strip", TRUE, NULL);
}

static int save_webp(VipsImage *img, const char *path, int q)
{
	return vips_webpsave(img, path, "Q", q, "strip", TRUE, NULL);
}

/* libvips' GIF writer takes no quality, so quality sizes the palette: 2.56 colours a
 * point (quality 50 gives 128 colours, 7 bits; 100 gives 256). */
static int save_gif(VipsImage *img, const char *path, int q)
{
	int bits = 1;

	while (bits < 8 && (1 << bits) < q * 256 / 100)
		bits++;
	return vips_gifsave(img, path, "bitdepth", bits, "strip", TRUE, NULL);
}

static int save_avif(VipsImage *img, const char *path, int q)
{
	return vips_heifsave(img, path, "Q", q, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
			     "strip", TRUE, NULL);
}

static int save_heif(VipsImage *img, const char *path, int q)
{
	return vips_heifsave(img, path, "Q", q, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_HEVC,
			     "strip", TRUE, NULL);
}

/* How shrink writes format, or NULL for one it does not handle (TIFF). */
static saver saver_of(const struct image_format *format)
{
	switch (format->id) {
	case FORMAT_JPEG: return save_jpeg;
	case FORMAT_PNG: return save_png;
	case FORMAT_WEBP: return save_webp;
	case FORMAT_GIF: return save_gif;
	case FORMAT_HEIF: return save_heif;
	case FORMAT_AVIF: return save_avif;
	case FORMAT_TIFF: break;
	}
	return NULL;
}

/* format when shrink reads and writes it, else NULL (also for a NULL format). */
static const struct image_format *shrinkable(const struct image_format *format)
{
	return format && saver_of(format) ? format : NULL;
}

/* ---- errors: each failing function fills why and returns -1 ---- */

static int fail(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -1;
}

/* what, then the first line of libvips' error (the deepest cause comes first) without
 * its "domain: " tag; libvips' error buffer is cleared for the next image. */
static int fail_vips(char *why, size_t n, const char *what)
{
	const char *msg = vips_error_buffer();
	size_t len = strcspn(msg, "\n");
	const char *colon = memchr(msg, ':', len);

	if (colon && colon[1] == ' ') {
		len -= (size_t)(colon + 2 - msg);
		msg = colon + 2;
	}
	if (len)
		fail(why, n, "%s: %.*s", what, (int)len, msg);
	else
		fail(why, n, "%s", what);
	vips_error_clear();
	return -1;
}

static int fail_corrupt(const struct image_format *format, char *why, size_t n)
{
	char what[64];

	snprintf(what, sizeof what, "truncated or corrupt %s", format->label);
	return fail_vips(why, n, what);
}

/* ---- reading ---- */

/* Checks that path is a non-empty regular file this process can read. */
static int check_file(const char *path, char *why, size_t n)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return fail(why, n, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return fail(why, n, "cannot stat %s: %s", path, strerror(e));
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return fail(why, n, "%s is not a regular file", path);
	if (st.st_size == 0)
		return fail(why, n, "empty file");
	return 0;
}

/* Refuses an image whose header promises more pixels, over all its frames, than
 * --max-pixels allows: a small file can unpack to gigabytes (a decompression bomb). */
static int check_pixels(VipsImage *img, long max_mp, char *why, size_t n)
{
	uint64_t pixels = (uint64_t)img->Xsize * (uint64_t)img->Ysize;
	uint64_t mp = (pixels + 999999) / 1000000;
	int frame = vips_image_get_page_height(img);

	if (pixels <= (uint64_t)max_mp * 1000000)
		return 0;
	if (frame == img->Ysize)
		return fail(why, n, "decompression bomb refused: %dx%d is %llu megapixels, "
			    "over --max-pixels %ld", img->Xsize, img->Ysize, (unsigned long long)mp, max_mp);
	return fail(why, n, "decompression bomb refused: %d frames of %dx%d are %llu megapixels, "
		    "over --max-pixels %ld", img->Ysize / frame, img->Xsize, frame,
		    (unsigned long long)mp, max_mp);
}

/* Opens path for sequential reading, having libvips read its header only, and checks
 * it: its format must be shrinkable and its size within --max-pixels.  Decode errors
 * found later fail the image (fail_on error) instead of being papered over. */
static int open_image(const char *path, const struct options *o, VipsImage **img,
		      const struct image_format **format, char *why, size_t n)
{
	const char *class, *loader, *codec;
	int rc;

	if (check_file(path, why, n) < 0)
		return -1;
	if (!(class = vips_foreign_find_load(path))) {
		vips_error_clear();
		return fail(why, n, "not an image");
	}
	loader = vips_nickname_find(g_type_from_name(class));
	if (!loader || !(*format = shrinkable(format_of_loader(loader))))
		return fail(why, n, "unsupported image format (%s): shrink reads JPEG, PNG, WebP, "
			    "GIF, AVIF and HEIF", loader ? loader : class);
	/* n = -1: every frame of an animation, so that the pixel check counts them all. */
	if ((*format)->animated)
		rc = vips_call(loader, path, img, "access", VIPS_ACCESS_SEQUENTIAL,
			       "fail_on", VIPS_FAIL_ON_ERROR, "n", -1, NULL);
	else
		rc = vips_call(loader, path, img, "access", VIPS_ACCESS_SEQUENTIAL,
			       "fail_on", VIPS_FAIL_ON_ERROR, NULL);
	if (rc)
		return fail_corrupt(*format, why, n);
	if (vips_image_get_typeof(*img, "heif-compression") &&
	    vips_image_get_string(*img, "heif-compression", &codec) == 0 && strcmp(codec, "av1") == 0)
		*format = format_named("avif");
	if (check_pixels(*img, o->max_mp, why, n) < 0) {
		g_object_unref(*img);
		return -1;
	}
	return 0;
}

/* ---- the pipeline: each step makes *t from in, or fails with libvips' error set ---- */

/* Applies EXIF orientation; libvips drops the tag as it turns the pixels.  All but a
 * mirror read rows out of order, so those decode the image into memory first (the pixel
 * check above bounds it). */
static int orient(VipsImage *in, VipsImage **t)
{
	VipsImage *mem;
	int rc;

	if (vips_image_get_orientation(in) == 2)
		return vips_autorot(in, t, NULL);
	if (!(mem = vips_image_copy_memory(in)))
		return -1;
	rc = vips_autorot(mem, t, NULL);
	g_object_unref(mem);
	return rc;
}

/* True when the image's ICC profile maps colours as sRGB does, as most cameras' and
 * editors' profiles do: a transform through it would change nothing but the time taken.
 * Judged by sending the 27 colours of {0, 128, 255}^3 through it. */
static int profile_is_srgb(VipsImage *in)
{
	static const VipsPel level[] = {0, 128, 255};
	VipsPel rgb[27][3], *out = NULL;
	VipsImage *probe, *t = NULL;
	const void *icc;
	size_t len, n;
	int same = 0;

	for (int i = 0; i < 27; i++) {
		rgb[i][0] = level[i % 3];
		rgb[i][1] = level[i / 3 % 3];
		rgb[i][2] = level[i / 9];
	}
	if (vips_image_get_blob(in, VIPS_META_ICC_NAME, &icc, &len) ||
	    !(probe = vips_image_new_from_memory_copy(rgb, sizeof rgb, 27, 1, 3, VIPS_FORMAT_UCHAR)))
		return 0;
	vips_image_set_blob_copy(probe, VIPS_META_ICC_NAME, icc, len);
	if (vips_icc_transform(probe, &t, "srgb", "embedded", TRUE,
			       "intent", VIPS_INTENT_PERCEPTUAL, NULL) == 0 &&
	    (out = vips_image_write_to_memory(t, &n)) && n == sizeof rgb) {
		same = 1;
		for (size_t i = 0; i < n; i++)
			same &= abs(out[i] - rgb[i / 3][i % 3]) <= 2;
	}
	vips_error_clear();
	g_free(out);
	if (t)
		g_object_unref(t);
	g_object_unref(probe);
	return same;
}

/* To 8-bit sRGB, or 8-bit grey for grey images: through the embedded ICC profile when
 * there is one and it is not sRGB's (stripping it would change the colours), else
 * libvips' own conversion (CMYK through its built-in profile, 16 bits down to 8).
 * A broken profile is ignored. */
static int to_srgb(VipsImage *in, VipsImage **t)
{
	VipsInterpretation space = vips_image_guess_interpretation(in);
	int grey = space == VIPS_INTERPRETATION_B_W || space == VIPS_INTERPRETATION_GREY16;

	if (!grey && vips_image_get_typeof(in, VIPS_META_ICC_NAME) &&
	    (space != VIPS_INTERPRETATION_sRGB || !profile_is_srgb(in))) {
		if (vips_icc_transform(in, t, "srgb", "embedded", TRUE,
				       "intent", VIPS_INTENT_PERCEPTUAL, NULL) == 0)
			return 0;
		vips_error_clear();
	}
	return vips_colourspace(in, t, grey ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB,
				NULL);
}

/* Keeps the first frame of an animation, for formats that hold one. */
static int first_frame(VipsImage *in, VipsImage **t)
{
	return vips_crop(in, t, 0, 0, in->Xsize, vips_image_get_page_height(in), NULL);
}

/* Resizes by scale, every frame alike (so whole pixels a frame), at least 1x1;
 * colours are premultiplied by alpha meanwhile so that transparent pixels do not bleed. */
static int resize(VipsImage *in, double scale, VipsImage **t)
{
	VipsObject *scope = VIPS_OBJECT(vips_image_new());
	VipsImage **s = (VipsImage **)vips_object_local_array(scope, 4);
	int frame = vips_image_get_page_height(in), frames = in->Ysize / frame;
	double w = fmax(1, rint(in->Xsize * scale)), h = fmax(1, rint(frame * scale));
	int alpha = vips_image_hasalpha(in), rc = -1;
	VipsImage *x = in;

	if (alpha) {
		if (vips_premultiply(x, &s[0], NULL))
			goto out;
		x = s[0];
	}
	if (vips_resize(x, &s[1], w / in->Xsize, "vscale", h / frame, NULL))
		goto out;
	x = s[1];
	if (alpha) {
		if (vips_unpremultiply(x, &s[2], NULL) || vips_cast_uchar(s[2], &s[3], NULL))
			goto out;
		x = s[3];
	}
	if (x->Ysize != frames * (int)h) {
		vips_error("shrink", "resized to %d rows, not %d frames of %d", x->Ysize, frames, (int)h);
		goto out;
	}
	if ((rc = vips_copy(x, t, NULL)) == 0 && frames > 1)
		vips_image_set_int(*t, VIPS_META_PAGE_HEIGHT, (int)h);
out:
	g_object_unref(scope);
	return rc;
}

/* For formats without alpha: transparent areas become white, as on a web page. */
static int flatten(VipsImage *in, VipsImage **t)
{
	VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
	int rc = vips_flatten(in, t, "background", white, NULL);

	vips_area_unref(VIPS_AREA(white));
	return rc;
}

/* Runs the pipeline from the opened image to a saved file at path, and describes it. */
static int convert(VipsImage *in, const struct image_format *to, const struct options *o,
		   const char *path, struct result *r)
{
	VipsObject *scope = VIPS_OBJECT(vips_image_new());
	VipsImage **t = (VipsImage **)vips_object_local_array(scope, 5);
	VipsImage *x = in;
	int frames = in->Ysize / vips_image_get_page_height(in), rc = -1;

	if (frames > 1 && !to->animated) {
		if (first_frame(x, &t[0]))
			goto out;
		x = t[0];
		frames = 1;
	}
	if (frames == 1 && vips_image_get_orientation(x) != 1) {
		if (orient(x, &t[1]))
			goto out;
		x = t[1];
	}
	if (to_srgb(x, &t[2]))
		goto out;
	x = t[2];
	if (o->scale < 1) {
		if (resize(x, o->scale, &t[3]))
			goto out;
		x = t[3];
	}
	if (!to->alpha && vips_image_hasalpha(x)) {
		if (flatten(x, &t[4]))
			goto out;
		x = t[4];
	}
	if ((rc = saver_of(to)(x, path, o->quality)) == 0) {
		r->format = to;
		r->width = x->Xsize;
		r->height = vips_image_get_page_height(x);
	}
out:
	g_object_unref(scope);
	return rc;
}

/* ---- writing: outputs are always files shrink created itself ---- */

/* Creates path anew: whatever is already there is never replaced. */
static int create_new(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);

	return fd < 0 ? -1 : close(fd);
}

/* Records' outputs: a new file in dir named after src's basename with the suffix, trying
 * NAME.SUF, NAME-1.SUF, NAME-2.SUF, ...: no output replaces a file, the input least of
 * all, and shrinks running side by side never share one.  Returns the path (bson_free). */
static char *create_output(const char *dir, const char *src, const char *suffix,
			   char *why, size_t n)
{
	const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
	const char *dot = strrchr(base, '.');
	int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
	const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";

	for (int i = 0; i < 1000; i++) {
		char *path = i ? bson_strdup_printf("%s%s%.*s-%d.%s", dir, sep, stem, base, i, suffix)
			       : bson_strdup_printf("%s%s%.*s.%s", dir, sep, stem, base, suffix);
		if (create_new(path) == 0)
			return path;
		bson_free(path);
		if (errno != EEXIST) {
			fail(why, n, "cannot create a file in %s: %s", dir, strerror(errno));
			return NULL;
		}
	}
	fail(why, n, "no free name for %.*s.%s in %s", stem, base, suffix, dir);
	return NULL;
}

/* IN OUT's output: a new OUT.PID.tmp beside OUT, renamed over it once complete, so that a
 * failure leaves OUT as it was.  OUT may be a regular file but not IN itself. */
static char *create_temp(const char *in, const char *out, int *rc, char *why, size_t n)
{
	struct stat a, b;
	char *tmp;

	if (stat(out, &b) == 0) {
		if (stat(in, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			*rc = EX_USAGE;
			fail(why, n, "%s is the input; shrink never overwrites its input", out);
			return NULL;
		}
		if (!S_ISREG(b.st_mode)) {
			*rc = EX_CANTCREAT;
			fail(why, n, "%s is not a regular file", out);
			return NULL;
		}
	}
	tmp = bson_strdup_printf("%s.%ld.tmp", out, (long)getpid());
	if (create_new(tmp) < 0) {
		*rc = EX_CANTCREAT;
		fail(why, n, "cannot create %s: %s", out, strerror(errno));
		bson_free(tmp);
		return NULL;
	}
	return tmp;
}

/* The output format: --format, else the one OUT's suffix names, else the input's. */
static const struct image_format *output_format(const struct options *o, const char *out,
						const struct image_format *from)
{
	const struct image_format *named = out ? shrinkable(format_of_path(out)) : NULL;

	if (o->format)
		return o->format;
	return named ? named : from;
}

/* Why the pipeline failed: libvips names the file in errors writing it; any other error
 * is in the input's data, decoded only now. */
static int fail_convert(const char *path, const char *shown, const struct image_format *from,
			char *why, size_t n)
{
	const char *msg = vips_error_buffer();
	char what[1024];

	if (strncmp(msg, path, strlen(path)) == 0) {
		snprintf(what, sizeof what, "cannot write %s", shown);
		fail_vips(why, n, what);
		return EX_CANTCREAT;
	}
	fail_corrupt(from, why, n);
	return EX_DATAERR;
}

/* ---- keeping the source: for an output that would be larger ---- */

/* libjpeg reports errors by calling error_exit, which must not return: it jumps back. */
struct jpeg_failure {
	struct jpeg_error_mgr mgr;
	jmp_buf back;
	char message[JMSG_LENGTH_MAX];
};

static void jpeg_failed(j_common_ptr c)
{
	struct jpeg_failure *f = (struct jpeg_failure *)c->err;

	c->err->format_message(c, f->message);
	longjmp(f->back, 1);
}

/* The ICC profile is colour, not metadata: without it the colours would change. */
static int is_icc_marker(const struct jpeg_marker_struct *m)
{
	return m->marker == JPEG_APP0 + 2 && m->data_length >= 12 &&
	       memcmp(m->data, "ICC_PROFILE", 12) == 0;
}

/* Copies the JPEG fin holds to fout losslessly, as jpegtran -copy icc does: the DCT
 * coefficients as they are, re-entropy-coded with optimised tables (progressive when the
 * source is), with its ICC profile and without any other marker (EXIF, XMP, IPTC,
 * comments).  Returns 0, or -1 with libjpeg's message in why. */
static int jpeg_strip_copy(FILE *fin, FILE *fout, char *why, size_t n)
{
	struct jpeg_decompress_struct src;
	struct jpeg_compress_struct dst;
	struct jpeg_failure f;
	jvirt_barray_ptr *coefficients;

	src.err = dst.err = jpeg_std_error(&f.mgr);
	f.mgr.error_exit = jpeg_failed;
	jpeg_create_decompress(&src);
	jpeg_create_compress(&dst);
	if (setjmp(f.back)) {
		jpeg_destroy_compress(&dst);
		jpeg_destroy_decompress(&src);
		return fail(why, n, "cannot copy the JPEG: %s", f.message);
	}
	jpeg_stdio_src(&src, fin);
	jpeg_save_markers(&src, JPEG_APP0 + 2, 0xffff);
	jpeg_read_header(&src, TRUE);
	coefficients = jpeg_read_coefficients(&src);
	jpeg_copy_critical_parameters(&src, &dst);
	dst.write_JFIF_header = src.saw_JFIF_marker;    /* no header the source did not have */
	dst.write_Adobe_marker = src.saw_Adobe_marker;
	dst.optimize_coding = TRUE;
	if (jpeg_has_multiple_scans(&src))
		jpeg_simple_progression(&dst);
	jpeg_stdio_dest(&dst, fout);
	jpeg_write_coefficients(&dst, coefficients);
	for (struct jpeg_marker_struct *m = src.marker_list; m; m = m->next)
		if (is_icc_marker(m))
			jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
	jpeg_finish_compress(&dst);
	jpeg_finish_decompress(&src);
	jpeg_destroy_compress(&dst);
	jpeg_destroy_decompress(&src);
	return 0;
}

/* Copies fin's bytes to fout as they are. */
static int byte_copy(FILE *fin, FILE *fout, char *why, size_t n)
{
	char buf[65536];
	size_t got;

	while ((got = fread(buf, 1, sizeof buf, fin)) > 0)
		if (fwrite(buf, 1, got, fout) != got)
			return fail(why, n, "cannot write: %s", strerror(errno));
	return ferror(fin) ? fail(why, n, "cannot read: %s", strerror(errno)) : 0;
}

/* Writes the source at in over the output at path.  A JPEG that needs no turning loses its
 * metadata losslessly (jpeg_strip_copy); any other image is copied byte for byte, as
 * libvips strips metadata only by re-encoding, and a lossless re-encode of an already
 * small PNG or GIF is larger than it (turning a JPEG losslessly is not in libjpeg's API). */
static int keep_source(const char *in, const char *path, const struct image_format *from,
		       VipsImage *img, char *why, size_t n)
{
	FILE *fin = fopen(in, "rb"), *fout = fopen(path, "wb");
	int rc;

	if (!fin || !fout)
		rc = fail(why, n, "cannot copy %s: %s", in, strerror(errno));
	else if (from->id == FORMAT_JPEG && vips_image_get_orientation(img) == 1)
		rc = jpeg_strip_copy(fin, fout, why, n);
	else
		rc = byte_copy(fin, fout, why, n);
	if (fin)
		fclose(fin);
	if (fout && fclose(fout) != 0 && rc == 0)
		rc = fail(why, n, "cannot write %s: %s", path, strerror(errno));
	return rc;
}

/* After the conversion: when the output at path (its stat in st) is larger than the
 * source and no other format or size was asked for, the source takes its place, and st
 * and r say so.  The width and height stay the output's: those of the source as shown. */
static int keep_smaller(const char *in, const char *path, const struct options *o,
			const struct image_format *from, const struct image_format *to,
			VipsImage *img, struct stat *st, struct result *r, char *why, size_t n)
{
	struct stat source;

	if (to != from || o->scale < 1)
		return 0;
	if (stat(in, &source) < 0)
		return fail(why, n, "cannot stat %s: %s", in, strerror(errno));
	if (st->st_size <= source.st_size)
		return 0;
	if (keep_source(in, path, from, img, why, n) < 0)
		return -1;
	if (stat(path, st) < 0)
		return fail(why, n, "cannot stat %s: %s", path, strerror(errno));
	r->kept_source = 1;
	return 0;
}

/* Names what shaped the output, for content-addressed keys: "q50", then the format when
 * it is not the input's ("q50-webp"), then the scale when it is not 1 ("q50-s0.5"). */
static void settings_name(const struct options *o, const struct image_format *from,
			  const struct image_format *to, char *out, size_t n)
{
	int len = snprintf(out, n, "q%d", o->quality);

	if (to != from && len > 0 && (size_t)len < n)
		len += snprintf(out + len, n - (size_t)len, "-%s", to->name);
	if (o->scale < 1 && len > 0 && (size_t)len < n)
		snprintf(out + len, n - (size_t)len, "-s%g", o->scale);
}

/* ---- one image ---- */

/* Shrinks the image at in into out, or when out is NULL into a new file in --out-dir.
 * Returns 0 with r filled in (r->path to bson_free), EX_DATAERR for a bad image,
 * EX_USAGE for an OUT that is IN, or EX_CANTCREAT for an output that cannot be
 * written, with the reason in why. */
static int shrink(const char *in, const char *out, const struct options *o,
		  struct result *r, char *why, size_t n)
{
	const struct image_format *from = NULL, *to;
	VipsImage *img;
	struct stat st;
	char *path;
	int rc = EX_CANTCREAT;

	if (open_image(in, o, &img, &from, why, n) < 0)
		return EX_DATAERR;
	to = output_format(o, out, from);
	settings_name(o, from, to, r->settings, sizeof r->settings);
	path = out ? create_temp(in, out, &rc, why, n) : create_output(o->out_dir, in, to->suffix, why, n);
	if (!path) {
		g_object_unref(img);
		return rc;
	}
	if (convert(img, to, o, path, r) < 0)
		rc = fail_convert(path, out ? out : path, from, why, n);
	else if (stat(path, &st) < 0)
		fail(why, n, "cannot stat %s: %s", path, strerror(errno));
	else if (keep_smaller(in, path, o, from, to, img, &st, r, why, n) < 0)
		rc = EX_CANTCREAT;    /* why says it */
	else if (out && rename(path, out) < 0)
		fail(why, n, "cannot rename %s to %s: %s", path, out, strerror(errno));
	else
		rc = EX_OK;
	g_object_unref(img);
	if (rc != EX_OK) {
		unlink(path);
		bson_free(path);
		return rc;
	}
	r->bytes = st.st_size;
	r->path = out ? bson_strdup(out) : path;
	if (out)
		bson_free(path);
	return EX_OK;
}

/* ---- the two modes ---- */

/* Record mode: a record with "file" gains the output fields, or an "error". */
static bson_t *shrink_record(struct stage *s, const bson_t *rec, void *arg)
{
	const struct options *o = arg;
	struct result r = {0};
	char why[1024];
	bson_t *out;

	(void)s;
	if (shrink(rec_str(rec, "file"), NULL, o, &r, why, sizeof why) != EX_OK)
		return rec_error(rec, "%s", why);
	out = bson_new();
	bson_copy_to_excluding_noinit(rec, out, "output_file", "output_bytes", "format", "width",
				      "height", "settings", "kept", NULL);
	BSON_APPEND_UTF8(out, "output_file", r.path);
	BSON_APPEND_INT64(out, "output_bytes", r.bytes);
	BSON_APPEND_UTF8(out, "format", r.format->name);
	BSON_APPEND_INT32(out, "width", r.width);
	BSON_APPEND_INT32(out, "height", r.height);
	BSON_APPEND_UTF8(out, "settings", r.settings);
	if (r.kept_source)
		BSON_APPEND_UTF8(out, "kept", "source");
	bson_free(r.path);
	return out;
}

/* shrink IN OUT: the outcome is the exit status, the reason on stderr. */
static int run_pair(const char *in, const char *out, const struct options *o)
{
	struct result r = {0};
	char why[1024];
	int rc = shrink(in, out, o, &r, why, sizeof why);

	if (rc != EX_OK)
		warnx("%s: %s", in, why);
	bson_free(r.path);
	return rc;
}

/* Keeps freed memory in one heap for the next image.  Huffman optimisation makes libjpeg
 * hold a whole image's DCT coefficients (30 MB for the luma of a 15-megapixel photo);
 * glibc would mmap such blocks and hand them back, so every image paid again to fault in
 * and zero them: a tenth of shrink's CPU time on big photos (see bench/shrink --perf). */
static void keep_memory(void)
{
	mallopt(M_ARENA_MAX, 1);
	mallopt(M_MMAP_THRESHOLD, 32 << 20);    /* glibc's largest */
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	mallopt(M_TOP_PAD, 64 << 20);
}

/* ---- command line ---- */

static double parse_scale(const char *s)
{
	char *end;
	double f;

	errno = 0;
	f = strtod(s, &end);
	if (errno || end == s || *end || !(f > 0 && f <= 1))
		cli_usage_error(usage, "--scale wants a factor over 0 and at most 1, not '%s'", s);
	return f;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	enum { OPT_FORMAT = 256, OPT_SCALE, OPT_MAX_PIXELS, OPT_OUT_DIR };
	static const struct option longopts[] = {
		{"quality", required_argument, NULL, 'q'},
		{"format", required_argument, NULL, OPT_FORMAT},
		{"scale", required_argument, NULL, OPT_SCALE},
		{"max-pixels", required_argument, NULL, OPT_MAX_PIXELS},
		{"out-dir", required_argument, NULL, OPT_OUT_DIR},
		{NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct options){.quality = 50, .scale = 1, .max_mp = 100, .out_dir = "."};
	while ((c = cli_getopt(argc, argv, "q:", longopts, usage)) != -1) {
		switch (c) {
		case 'q':
			o->quality = (int)cli_long("-q", optarg, 1, 100);
			break;
		case OPT_FORMAT:
			if (!(o->format = shrinkable(format_named(optarg))))
				cli_usage_error(usage, "unknown --format '%s'", optarg);
			break;
		case OPT_SCALE:
			o->scale = parse_scale(optarg);
			break;
		case OPT_MAX_PIXELS:
			o->max_mp = cli_long("--max-pixels", optarg, 1, 1000000);
			break;
		case OPT_OUT_DIR:
			o->out_dir = optarg;
			break;
		}
	}
}

int main(int argc, char **argv)
{
	struct options o;
	struct stat st;
	int rc;

	cli_common(argc, argv, usage);
	parse_options(argc, argv, &o);
	if (argc - optind != 0 && argc - optind != 2)
		cli_usage_error(usage, "want IN OUT, or no arguments to read records");
	if (argc - optind == 2 && strcmp(o.out_dir, ".") != 0)
		cli_usage_error(usage, "--out-dir is for records; IN OUT names its output");
	if (stat(o.out_dir, &st) < 0 || !S_ISDIR(st.st_mode))
		cli_usage_error(usage, "--out-dir %s is not a directory", o.out_dir);

	keep_memory();
	g_set_prgname(program_invocation_short_name);  /* names libvips' warnings */
	if (VIPS_INIT(argv[0]))
		errx(EX_UNAVAILABLE, "cannot start libvips: %s", vips_error_buffer());
	vips_cache_set_max(0);          /* every image is new: caching only holds memory */
	vips_block_untrusted_set(TRUE); /* no ImageMagick, PDF, SVG, ... loaders */

	if (argc - optind == 2)
		rc = run_pair(argv[optind], argv[optind + 1], &o);
	else
		rc = stage_run("file", shrink_record, &o);
	vips_shutdown();
	return rc;
}
