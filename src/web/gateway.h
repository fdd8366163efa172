/*
 * The web gateway: `skiff server --web-port` (default 8000).  It turns HTTP
 * requests and WebSocket sessions for /<app>/<label>/... into streams on the
 * worker sockets of the endpoint's containers (docs/protocol.md, "Web
 * requests"), queues them while containers start, and streams bodies both
 * ways under per-stream windows.  One libuv loop, the server's.
 */
#ifndef SK_WEB_GATEWAY_H
#define SK_WEB_GATEWAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

struct fn_server;
struct fn_function;
struct fn_container;
typedef struct gateway gateway;

typedef struct gw_opts {
	const char *host;     /* bind address; default 127.0.0.1 */
	int port;             /* default 8000; 0 = any free port */
	bool port_given;      /* --web-port was given: a busy port is an error */
	const char *domain;   /* --web-domain: Host <app>--<label>.<domain> also routes */
	const char *url_host; /* the host written in URLs; default: host, or 127.0.0.1 */
} gw_opts;

int gateway_open(struct fn_server *fs, const gw_opts *o, gateway **out, sk_error *err);
/* Stops listening and closes every connection (server shutdown). */
void gateway_close(gateway *gw);
int gateway_port(const gateway *gw);
/* The endpoint's URL (malloc'd). */
char *gateway_url(const gateway *gw, const char *app, const char *label);

/* Hooks for the scheduler (fn_sched.c). */
void web_pump(struct fn_function *fn);
void web_container_frame(struct fn_container *fc, const char *t, json_t *hdr,
			 const unsigned char *body, size_t len);
void web_container_gone(struct fn_container *fc);
void web_function_stop(struct fn_function *fn, const char *why);
/* A redeploy: the requests queued for from wait for to instead. */
void web_function_move(struct fn_function *from, struct fn_function *to);
/* Requests waiting for a container plus streams open in containers. */
size_t web_demand(const struct fn_function *fn);
size_t web_queued(const struct fn_function *fn);
/* When the oldest request queued for fn came (wall time), 0 when none waits. */
double web_oldest_queued(const struct fn_function *fn);
/* Seconds the oldest HTTP request open in fc has run (WebSockets do not count). */
double web_oldest_request(const struct fn_container *fc);

#endif
