/*
 * What the server's parts share: the one server object and the API entry
 * point.  server.c owns the lifecycle, api.c the HTTP routes.
 */
#ifndef SK_SERVER_INTERNAL_H
#define SK_SERVER_INTERNAL_H

#include <stdbool.h>
#include <uv.h>

#include "api/http.h"
#include "image/image.h"
#include "runtime/cgroup.h"
#include "runtime/container.h"
#include "runtime/gpu.h"
#include "store/store.h"

#define SKIFF_SERVER_VERSION "0.1.0"

typedef struct skiff_server {
	uv_loop_t *loop;
	char *home;
	char *instance;
	cg_host cg;
	const char *runtime_name;
	char *runtime_path;
	int cpus;
	long long memory_mib;
	sk_store *store;
	image_store *images;
	rt *rt;
	http_server *http;
	uv_signal_t sigterm, sigint;
	bool stopping;
	int exit_code;
	double heartbeat_timeout;
	gpu_dev *gpus;          /* the machine's GPUs (or --fake-gpus) */
	size_t n_gpus;
	char (*gpu_owner)[20];  /* per GPU: the container using it, or "" */
	double reserve_cpu;     /* --reserve: kept for the server itself */
	long long reserve_memory;
	struct fn_server *fns;
	struct usage_track *usage; /* usage.c: the running containers it meters */
} skiff_server;

void api_handle(http_req *req, void *data);
/* Streams st from offset to req (chunked); snapshot: only what is there now. */
void api_stream_out(http_req *req, rt_stream *st, size_t offset, bool snapshot);
/* Writes a container's row in the store. */
void api_record_container(skiff_server *s, rt_container *c);
/* Records a container's end in the store (rt's on_exit). */
void api_container_exited(rt_container *c, void *data);
/* tokens_api.c: /v1/tokens (proxy-auth tokens); true when it handled the request. */
bool tokens_api_handle(skiff_server *s, http_req *req, char **parts, size_t n);

#endif
