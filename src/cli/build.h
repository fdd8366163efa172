/*
 * build: makes sure an image exists (POST /v1/images) and shows the build's
 * progress on stderr: each line as it comes when stderr is not a terminal,
 * one line rewritten in place when it is.
 */
#ifndef SK_CLI_BUILD_H
#define SK_CLI_BUILD_H

#include "cli/client.h"
#include "util/error.h"

/* python_version may be NULL.  *image_id: caller frees. */
int build_image(client *c, const char *base, const char *python_version, char **image_id,
		sk_error *err);

#endif
