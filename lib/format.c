/* The image format table and its lookups; see format.h. */
#include <string.h>
#include <strings.h>

#include "format.h"

#define SIG(s) { s, sizeof s - 1 }

/* HEIF comes before AVIF, which shares its loader: see format_of_loader. */
static const struct image_format formats[] = {
	{ FORMAT_JPEG, "jpeg", "JPEG", "jpg", "image/jpeg", "jpegload", 0, 0,
	  { SIG("\xff\xd8\xff") } },
	{ FORMAT_PNG, "png", "PNG", "png", "image/png", "pngload", 0, 1,
	  { SIG("\x89PNG\r\n\x1a\n") } },
	{ FORMAT_WEBP, "webp", "WebP", "webp", "image/webp", "webpload", 1, 1,
	  { SIG("RIFF????WEBP") } },
	{ FORMAT_GIF, "gif", "GIF", "gif", "image/gif", "gifload", 1, 1,
	  { SIG("GIF87a"), SIG("GIF89a") } },
	{ FORMAT_HEIF, "heif", "HEIF", "heic", "image/heif", "heifload", 0, 1,
	  { SIG("????ftypheic"), SIG("????ftypheix"), SIG("????ftypmif1"), SIG("????ftypmsf1") } },
	{ FORMAT_AVIF, "avif", "AVIF", "avif", "image/avif", "heifload", 0, 1,
	  { SIG("????ftypavif"), SIG("????ftypavis") } },
	{ FORMAT_TIFF, "tiff", "TIFF", "tif", "image/tiff", "tiffload", 0, 1,
	  { SIG("II*\0"), SIG("MM\0*") } },
};
#define NFORMATS (sizeof formats / sizeof *formats)
#define NMAGIC (sizeof formats[0].magic / sizeof formats[0].magic[0])

const struct image_format *format_named(const char *word)
{
	for (size_t i = 0; word && i < NFORMATS; i++)
		if (strcasecmp(word, formats[i].name) == 0 || strcasecmp(word, formats[i].suffix) == 0)
			return &formats[i];
	return NULL;
}

const char *path_suffix(const char *path)
{
	const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');

	return dot && (!slash || dot > slash) ? dot + 1 : NULL;
}

const struct image_format *format_of_path(const char *path)
{
	return format_named(path_suffix(path));
}

const struct image_format *format_of_loader(const char *loader)
{
	for (size_t i = 0; i < NFORMATS; i++)
		if (strcmp(loader, formats[i].loader) == 0)
			return &formats[i];
	return NULL;
}

static int starts_with(const unsigned char *head, size_t len, const struct format_magic *m)
{
	size_t k = 0;

	if (len < m->len)
		return 0;
	while (k < m->len && (m->bytes[k] == '?' || (unsigned char)m->bytes[k] == head[k]))
		k++;
	return k == m->len;
}

const struct image_format *format_sniff(const unsigned char *head, size_t len)
{
	for (size_t i = 0; i < NFORMATS; i++)
		for (size_t j = 0; j < NMAGIC && formats[i].magic[j].len; j++)
			if (starts_with(head, len, &formats[i].magic[j]))
				return &formats[i];
	return NULL;
}
