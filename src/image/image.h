/*
 * Images: specs, their content-addressed ids, and the layer store.
 *
 * An image spec is JSON {"base": "debian_slim", "python_version": "3.11"|null,
 * "apt_packages": ["jq", ...]} (apt_packages optional).  Its id is "im-" +
 * sha256 of the normalised spec together with the Debian mirror and suite it
 * is built from, so a different mirror is a different image.  python_version
 * null and "3.11" normalise to the same spec (bookworm ships 3.11 only); the
 * apt packages are sorted and de-duplicated, and an empty list is left out of
 * the normalised spec, so the id of a spec without packages is what it was
 * before the field existed.
 *
 * Layout under $SKIFF_HOME/images:
 *   <id>/rootfs        a finished image's root file system (read-only lower
 *                      layer of every container made from it)
 *   <id>/spec.json     the normalised spec
 *   .tmp-<id>-<rand>/  a build in progress; renamed to <id> when it succeeds,
 *                      removed when it fails or at the next start
 * A finished image also has a row in the store (store_image_put).
 *
 * Builds run `debootstrap --variant=minbase --include=python3[,PKG...]
 * bookworm DIR MIRROR` as a child process (uv_spawn), never blocking the loop.  Every
 * line it prints goes to each waiter's progress callback.  Concurrent
 * requests for the same id join the one build in flight.  A failed build
 * reports an error whose message ends with the last lines of its output.
 *
 * Thread: the event-loop thread only.
 */
#ifndef SK_IMAGE_H
#define SK_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "store/store.h"
#include "util/error.h"

typedef struct image_spec {
	char *base;           /* "debian_slim" */
	char *python_version; /* normalised: "3.11" (never NULL after parse) */
	char **apt_packages;  /* sorted, no duplicates; NULL when there are none */
	size_t n_apt_packages;
} image_spec;

/*
 * Validates and normalises a spec object.  Errors (SK_ERR_INVALID) say what
 * was wrong: unknown base; python_version not a string; a python_version
 * Debian bookworm does not ship (the message names the one it has, "3.11");
 * apt_packages not a list of strings, or a name that is not a valid Debian
 * package name (the message quotes it).  On error *out holds nothing to
 * release.
 */
int image_spec_parse(const json_t *j, image_spec *out, sk_error *err);
void image_spec_release(image_spec *s);
/* The normalised spec as compact JSON text with sorted keys; caller frees. */
char *image_spec_json(const image_spec *s);
/* "im-<sha256 hex of spec json + mirror + suite>"; caller frees. */
char *image_spec_id(const image_spec *s, const char *mirror);

typedef struct image_store image_store;

/*
 * The mirror named by sources text in either format (deb822 .sources or
 * one-line sources.list): the first http(s) URI of an enabled "deb" entry
 * whose suites include bookworm, without trailing slashes.  NULL when there
 * is none; caller frees.
 */
char *image_parse_mirror(const char *text);

/*
 * Opens the layer store under home/images (created if missing), removes
 * leftovers of interrupted builds (.tmp-*), and reads the machine's Debian
 * mirror from /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list
 * (see image_parse_mirror; default http://deb.debian.org/debian).
 * The environment variable SKIFF_DEBIAN_MIRROR overrides it.
 *
 * Builds run /usr/sbin/debootstrap, else debootstrap from PATH; the
 * environment variable SKIFF_DEBOOTSTRAP, read when a build starts, names
 * another program taking the same arguments (the tests use a fake one).
 */
int image_store_open(uv_loop_t *loop, const char *home, sk_store *db, image_store **out,
		     sk_error *err);
/*
 * Kills builds in flight (their waiters get an SK_ERR_UNAVAILABLE error
 * "server is shutting down"), removes their temporary folders, and frees the
 * store once the children are reaped.  done runs when everything is closed
 * (may be NULL): before this returns when no build is in flight.  The
 * waiters hear of the shutdown before this returns.
 */
void image_store_close(image_store *is, void (*done)(void *data), void *data);
const char *image_store_mirror(const image_store *is);

/*
 * The rootfs of a finished image (caller frees), or NULL when it has none:
 * a base image's rootfs folder, or for an image with build steps the chain of
 * its layers' diff folders down to its base's rootfs, joined with ':' top
 * first (overlayfs's lowerdir; docs/api.md, "Image build steps").
 */
char *image_rootfs(const image_store *is, const char *image_id);
/* The image's config JSON text (env, workdir, ...), or NULL when it has none. */
char *image_config(const image_store *is, const char *image_id);
/* $SKIFF_HOME/images */
const char *image_store_dir(const image_store *is);

typedef void (*image_progress_fn)(void *ctx, const char *line);
/* err is NULL on success; image_id is valid only during the call. */
typedef void (*image_done_fn)(void *ctx, const char *image_id, bool cached,
			      const sk_error *err);
typedef struct image_waiter image_waiter;

/*
 * Makes sure the image for spec exists.  When it is already built, done runs
 * before this returns (cached = true, no progress) and *out is NULL.
 * Otherwise the build starts (or is joined), progress runs for each output
 * line, done runs once at the end, and *out is a handle that the caller may
 * cancel (it then gets no more callbacks; the build goes on for others).
 * Returns -1 only when the build cannot even start, or a built image's
 * missing store row cannot be put back (then neither callback runs).  The
 * handle is freed once done has run: cancel it only before that.
 * spec must come from image_spec_parse.
 */
int image_ensure(image_store *is, const image_spec *spec, image_progress_fn progress,
		 image_done_fn done, void *ctx, image_waiter **out, sk_error *err);
void image_waiter_cancel(image_waiter *w);

#endif
