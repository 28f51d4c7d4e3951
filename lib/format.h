/* The image formats of the pipeline, in one table: the types fetchimg sniffs, the formats
 * shrink reads and writes, the suffixes and Content-Types s3put uploads with. */
#ifndef IMGPIPE_FORMAT_H
#define IMGPIPE_FORMAT_H

#include <stddef.h>

/* format_sniff never looks past this many bytes of a file. */
#define FORMAT_SNIFF_BYTES 16

enum format_id { FORMAT_JPEG, FORMAT_PNG, FORMAT_WEBP, FORMAT_GIF, FORMAT_HEIF, FORMAT_AVIF,
		 FORMAT_TIFF };

/* Bytes a file of the format starts with; '?' matches any byte. */
struct format_magic {
	const char *bytes;
	size_t len;             /* 0 ends a format's list */
};

struct image_format {
	enum format_id id;
	const char *name;       /* "jpeg": shrink's --format and "format" field */
	const char *label;      /* "JPEG": how messages name it */
	const char *suffix;     /* "jpg": of its files */
	const char *mime;       /* "image/jpeg": fetchimg's content_type, s3put's Content-Type */
	const char *loader;     /* "jpegload": the libvips loader that reads it */
	int animated;           /* can hold several frames */
	int alpha;              /* can hold transparency */
	struct format_magic magic[4];
};

/* The format called word, by name or suffix in any case (jpeg, JPG, heic), or NULL;
 * NULL for a NULL word. */
const struct image_format *format_named(const char *word);
/* The format path's suffix names, or NULL. */
const struct image_format *format_of_path(const char *path);
/* The suffix of path's last component, after its last dot (no dot), or NULL. */
const char *path_suffix(const char *path);
/* The format libvips reads with loader, or NULL.  heifload reads AVIF and HEIF alike: it
 * gives HEIF, the container, as only the image's header tells the codec inside. */
const struct image_format *format_of_loader(const char *loader);
/* The format whose signature the first len bytes of a file (head) start with, or NULL. */
const struct image_format *format_sniff(const unsigned char *head, size_t len);

#endif
