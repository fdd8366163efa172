/* Small file-system helpers.  All return 0 or -1 with *err filled. */
#ifndef SK_FSUTIL_H
#define SK_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

int sk_mkdir_p(const char *path, mode_t mode, sk_error *err);
/* Removes a tree without crossing into other mounts; a missing path is fine. */
int sk_rm_rf(const char *path, sk_error *err);
/*
 * Makes dst (which must not exist) a copy of the tree src in which every
 * non-directory is a hard link to src's (files, symlinks, device nodes such as
 * overlayfs whiteouts) and every directory is new, with src's mode, owner,
 * times and extended attributes (overlayfs's opaque marks among them).  Same
 * file system only.  Cost: one syscall or so per entry, no data copied.
 */
int sk_link_tree(const char *src, const char *dst, sk_error *err);
/* Writes a whole file atomically (temp file + rename). */
int sk_write_file(const char *path, const void *data, size_t len, mode_t mode, sk_error *err);
/* Reads a whole file (NUL-terminated); caller frees. */
int sk_read_file(const char *path, char **out, size_t *len, sk_error *err);
/* Monotonic clock in nanoseconds / wall clock in seconds. */
unsigned long long sk_now_ns(void);
double sk_wall_time(void);
/* n random bytes as 2n lowercase hex digits into out (size 2n+1). */
void sk_random_hex(char *out, size_t n);

#endif
