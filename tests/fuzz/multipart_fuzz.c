/* libFuzzer target for the upload body reader (cgi/multipart.c, on GMime).
 * Input: a Content-Type line, a newline, then the body.  Checks that every answer is
 * either a well-formed form or a reason, and that nothing leaks or overruns. */
#include <assert.h>
#include <string.h>

#include "../../cgi/multipart.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	char ct[512], why[512];
	struct form f;
	size_t ctlen;

	if (!nl || (size_t)(nl - (const char *)data) >= sizeof ct)
		return 0;
	ctlen = (size_t)(nl - (const char *)data);
	memcpy(ct, data, ctlen);
	ct[ctlen] = '\0';
	why[0] = '\0';
	if (body_type(ct, why, sizeof why) != BODY_FORM)
		return 0;
	if (form_parse(ct, nl + 1, size - ctlen - 1, &f, why, sizeof why) == 0) {
		assert(f.file && f.file[f.file_len] == '\0');
		assert(!f.webhook_url || strlen(f.webhook_url) < size);
		form_free(&f);
	} else {
		assert(why[0] && !f.file && !f.webhook_url);
	}
	return 0;
}
