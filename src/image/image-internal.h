/*
 * Shared by image.c (builds) and spec.c (specs and ids); not for other modules.
 */
#ifndef SK_IMAGE_INTERNAL_H
#define SK_IMAGE_INTERNAL_H

#include "image/image.h"

#define IMAGE_SUITE "bookworm"

/* A deep copy of a parsed spec, for a build that outlives its request. */
void image_spec_copy(image_spec *dst, const image_spec *src);

/*
 * debootstrap's --include argument: "--include=python3" followed by the
 * spec's apt packages, comma-separated (python3 itself only once); caller
 * frees.  Package names passed image_spec_parse, so none holds a comma.
 */
char *image_spec_include_arg(const image_spec *s);

#endif
