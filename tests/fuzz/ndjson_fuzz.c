/* libFuzzer target for lib/ndjson.c: any input read as NDJSON through fmemopen.  Each
 * record is written back and looked into, each bad line reported; nothing may crash,
 * leak or overflow. */
#include <stdlib.h>

#include "imgpipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *null;
	struct ndjson_reader r;
	bson_error_t error;
	bson_t *doc;
	FILE *in;
	int rc;

	if (!null && !(null = fopen("/dev/null", "w")))
		abort();
	if (size == 0 || !(in = fmemopen((void *)data, size, "r")))
		return 0;
	ndjson_reader_init(&r, in);
	while ((rc = ndjson_read(&r, &doc, &error)) != 0) {
		if (rc < 0) {
			bson_t *bad = ndjson_bad_line(r.lineno, error.message);
			ndjson_write(null, bad);
			bson_destroy(bad);
			continue;
		}
		ndjson_write(null, doc);
		if (!rec_has_error(doc)) {
			bson_t *failed = rec_error(doc, "fuzz %s %lld", rec_str(doc, "url") ?
						   rec_str(doc, "url") : "-",
						   (long long)rec_int(doc, "serial_no", -1));
			ndjson_write(null, failed);
			bson_destroy(failed);
		}
		bson_destroy(doc);
	}
	ndjson_reader_free(&r);
	fclose(in);
	return 0;
}
