#include "cli/connect.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/xalloc.h"

static void set_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

	if (timeout_ms <= 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int connect_path(int fd, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	return connect(fd, (struct sockaddr *)&sa, sizeof(sa));
}

/* sun_path holds 108 bytes; deeper sockets are reached through their folder's fd. */
static int connect_long_path(int fd, const char *path)
{
	_cleanup_free_ char *dir = xstrdup(path);
	_cleanup_close_ int dfd = -1;
	char *slash = strrchr(dir, '/');
	char short_path[108];

	if (!slash || slash == dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	*slash = 0;
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	if ((size_t)snprintf(short_path, sizeof(short_path), "/proc/self/fd/%d/%s", dfd,
			     slash + 1) >= sizeof(short_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return connect_path(fd, short_path);
}

static int connect_unix(const char *path, int timeout_ms, sk_error *err)
{
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0)
		return sk_error_errno(err, errno, "socket");
	r = connect_path(fd, path);
	if (r < 0 && errno == ENAMETOOLONG)
		r = connect_long_path(fd, path);
	if (r < 0)
		return sk_error_errno(err, errno, "cannot connect to the skiff server at unix:%s",
				      path);
	set_timeouts(fd, timeout_ms);
	r = fd;
	fd = -1;
	return r;
}

static int connect_tcp(const char *host, const char *port, int timeout_ms, sk_error *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int one = 1, last = 0, r;

	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0)
		return sk_error_set(err, SK_ERR_UNAVAILABLE, "cannot resolve '%s': %s", host,
				    gai_strerror(r));
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			freeaddrinfo(res);
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			set_timeouts(fd, timeout_ms);
			return fd;
		}
		last = errno;
		close(fd);
	}
	freeaddrinfo(res);
	return sk_error_errno(err, last, "cannot connect to the skiff server at http://%s:%s",
			      host, port);
}

int connect_endpoint(const endpoint *ep, int timeout_ms, sk_error *err)
{
	if (ep->kind == ENDPOINT_UNIX)
		return connect_unix(ep->path, timeout_ms, err);
	return connect_tcp(ep->host, ep->port, timeout_ms, err);
}
