/* imgpipe.cgi: not built yet; see its issue. */
#include "imgpipe.h"

static const char usage[] =
	"usage: imgpipe.cgi [--help] [--version]\n"
	"imgpipe.cgi is not implemented yet.\n";

int main(int argc, char **argv)
{
	cli_common(argc, argv, usage);
	errx(EX_UNAVAILABLE, "not implemented yet");
}
