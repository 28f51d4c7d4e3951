/* Whole writes to a file descriptor (imgpipe.h). */
#include <errno.h>
#include <unistd.h>

#include "imgpipe.h"

int fd_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}
