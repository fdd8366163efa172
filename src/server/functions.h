/*
 * Functions: ephemeral apps with heartbeats, registered functions, their
 * calls and input queues, the containers that run them, and the worker
 * socket those containers talk to (docs/protocol.md).  The HTTP side of
 * docs/api.md ("Apps and functions") is in fn_api.c.
 *
 * Thread: the event-loop thread only.
 */
#ifndef SK_FUNCTIONS_H
#define SK_FUNCTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "api/http.h"
#include "runtime/container.h"

typedef struct skiff_server skiff_server;
typedef struct fn_server fn_server;

int fn_server_open(skiff_server *s, fn_server **out, sk_error *err);
/* Stops every app (their containers are killed through the runtime). */
void fn_server_stop(fn_server *fs);
void fn_server_free(fn_server *fs);

/* True (and handled) when c is a function container. */
bool fn_container_exited(fn_server *fs, rt_container *c);
/* True when app_id names a running in-memory app. */
bool fn_app_exists(fn_server *fs, const char *app_id);

/* The live fields of a function container's listing (docs/api.md), or NULL. */
json_t *fn_container_json(fn_server *fs, rt_container *c);

/* Routes under /v1/apps (except lookup), /v1/functions and /v1/calls. */
bool fn_api_handle(fn_server *fs, http_req *req, char **parts, size_t n);
/* Routes of five and six parts: /v1/apps/<app>/functions/<name>, .../classes/<cls>/instances. */
bool fn_api_handle_long(fn_server *fs, http_req *req, char **parts, size_t n);
/* The name of a running deployed app a function of which uses image_id, or NULL. */
const char *fn_image_user(fn_server *fs, const char *image_id);
/* At start, once the gateway is up: deployed apps come back (deploy.c). */
void deploy_restore(fn_server *fs);

#endif
