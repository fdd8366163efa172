/*
 * Image builds with steps (docs/api.md, "Image build steps and the layer
 * cache"): the base (debian_slim by debootstrap, scratch, or an OCI image
 * from disk), then one layer per step, each cached under
 * $SKIFF_HOME/images/layers/<id> by the hash of its parent and its
 * definition.  `run` steps run in build containers of the image so far;
 * their overlay upper folder becomes the layer.
 *
 * Thread: the event-loop thread only.
 */
#ifndef SK_SERVER_BUILDS_H
#define SK_SERVER_BUILDS_H

#include <jansson.h>
#include <stdbool.h>

#include "runtime/container.h"
#include "util/error.h"

struct skiff_server;
typedef struct build_job build_job;

/* One NDJSON message for the client (a reference the callee owns). */
typedef void (*build_msg_fn)(void *ctx, json_t *msg);
/* The end: err NULL on success; image_id valid only during the call. */
typedef void (*build_done_fn)(void *ctx, const char *image_id, bool cached, const sk_error *err);

/* Whether spec is valid (before the answer's stream starts). */
int builds_check(const json_t *spec, sk_error *err);
/*
 * Starts building spec (a reference is taken).  done may run before this
 * returns (everything cached).  -1: the spec is invalid (err says why;
 * no callback runs).
 */
int builds_start(struct skiff_server *s, json_t *spec, build_msg_fn msg, build_done_fn done,
		 void *ctx, build_job **out, sk_error *err);
/* The client went away: the build goes on (its layers are cached), silently. */
void builds_detach(build_job *job);
/* A build container ("bd-...") ended; false when c is not one. */
bool builds_container_exited(struct skiff_server *s, rt_container *c);

/* GET /v1/images fields for one image: steps, layers, config. */
void builds_image_info(struct skiff_server *s, const char *image_id, const char *spec_json,
		       json_t *row);
/* POST /v1/images/prune */
json_t *builds_prune(struct skiff_server *s);

/* The image config's env (names own sets are left out) followed by own's
 * entries; own (NULL-terminated, may be NULL) is consumed. */
char **builds_image_env(struct skiff_server *s, const char *image_id, char **own);
/* The image config's workdir, or NULL. */
char *builds_image_workdir(struct skiff_server *s, const char *image_id);
/* "mounts": [{"source", "target", "readonly"}] of functions and sandboxes;
 * sources must exist.  *out (strings xstrdup'd) is the caller's. */
int builds_parse_mounts(const json_t *j, oci_mount **out, size_t *n, sk_error *err);

#endif
