/* The functions subsystem's own types, shared by functions.c, fn_worker.c and fn_api.c. */
#ifndef SK_FN_INTERNAL_H
#define SK_FN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/functions.h"
#include "server/internal.h"
#include "util/buf.h"

/* Output record statuses (docs/api.md). */
enum {
	ST_OK = 0,
	ST_USER_ERROR = 1,
	ST_SYSTEM_ERROR = 2,
	ST_GEN_ITEM = 3,
	ST_GEN_DONE = 4,
	ST_RETRY_ARGS = 5,
	ST_BATCH_OK = 6, /* payload: u32 count | pickled list of count results, for idx.. */
};

enum call_kind { CALL_REMOTE, CALL_SPAWN, CALL_MAP, CALL_GEN };

typedef struct fn_app fn_app;
typedef struct fn_function fn_function;
typedef struct fn_call fn_call;
typedef struct fn_chunk fn_chunk;
typedef struct fn_container fn_container;
typedef struct worker worker;
typedef struct gw_req gw_req;

enum web_kind { WEB_FUNCTION, WEB_ASGI, WEB_WSGI, WEB_SERVER };

/* A web endpoint's settings and its requests waiting for a container (web/gateway.c). */
typedef struct fn_web {
	enum web_kind kind;
	char method[12];         /* WEB_FUNCTION: the one method it answers */
	char label[64];
	bool requires_auth, docs;
	char *url;
	gw_req *qhead, *qtail;
	size_t queued;
	double avg_s;            /* measured seconds per request, 0 = unknown */
} fn_web;

/* A reference-counted byte buffer that input chunks point into. */
typedef struct fn_blob {
	int refs;
	char *base;
	size_t len;
} fn_blob;

struct fn_chunk {
	fn_call *call;
	uint32_t start, count, retry, deaths;
	fn_blob *blob;
	size_t off, len;        /* the pickled chunk inside blob */
	bool requeued;          /* inputs of it may already be final: send a skip list */
	double due;             /* retries: not before this (wall time) */
	double lease_at;        /* when it was sent to a container */
	double queued_at;       /* when it last joined the queue */
	fn_chunk *next;         /* in a queue, or in a container's leases */
};

typedef struct result_waiter {
	uv_timer_t timer;
	http_req *req;
	fn_call *call;
	struct result_waiter *next;
} result_waiter;

struct fn_call {
	char id[20];
	fn_function *fn;
	enum call_kind kind;
	double created_at, done_at;
	bool last;              /* no more inputs will come */
	uint32_t total;         /* inputs seen: max(start + count) */
	uint32_t n_final;       /* inputs with their final output */
	uint8_t *final;         /* per input: has its final output */
	uint32_t final_cap;
	uint32_t items;         /* generator items so far */
	bool complete;          /* every input has its final output */
	bool delivered;         /* ... and the client has had them all */
	bool cancelled, expired;
	bool durable;           /* kept in durable_calls (deployed apps' spawns and schedules) */
	int refs;               /* chunks (queued, delayed or leased) pointing here */
	sk_buf out;             /* MAP/GEN: output records not yet fetched */
	http_req *poll;         /* MAP/GEN: the parked outputs poll */
	uv_timer_t *poll_timer;
	http_req *remote_req;   /* REMOTE: the request to answer */
	sk_buf result;          /* SPAWN: the final payload, kept */
	uint8_t result_status;
	bool has_result;
	result_waiter *waiters;
	fn_call *next;
};

enum fc_state { FC_STARTING, FC_READY, FC_STOPPING, FC_DEAD };

struct fn_container {
	char id[20];
	char token[33];
	fn_function *fn;
	rt_container *rc;
	worker *w;
	enum fc_state state;
	int want;
	fn_chunk *leases;       /* chunks it holds (up to the function's max_inputs) */
	int n_leases;
	double started_at, ready_at, last_frame, idle_since, stop_at;
	/* The cold start's parts (docs/api.md, "Cold starts"): when the work that
	 * asked for it was queued, when its interpreter ran our first line (its
	 * clock), when it connected, its import and enter hooks, its first input. */
	double demand_at, py_t0, attach_at, import_ms, enter_ms, first_input_at;
	bool pooled;            /* taken from the warm pool (pool.c) */
	char *pool_dir;         /* then: its host folders, unmounted when it ends */
	/* A fork of the function's snapshot template (snapshot.c): when the fork
	 * was asked for, and the child's namespace and root setup (ms). */
	bool snap, forked, spare; /* spare: forked ahead of demand, taken */
	double fork_at, setup_ms;
	char tpl_id[20];
	bool killed_for_timeout, killed_for_idle;
	bool stop_requested;    /* stopped on purpose: its end is no failure */
	uint64_t inputs_served;
	long long cpu_ns_last;  /* the box's CPU time when it last finished a chunk */
	int gpus[64];           /* indices into the server's GPU table it holds */
	int n_gpus;
	sk_buf line[2];         /* partial stdout/stderr lines */
	gw_req *streams;        /* web requests open in it */
	int web_open;
	uint32_t web_next_id;
	fn_container *next;
};

struct fn_function {
	char id[20];
	fn_server *fs;
	fn_app *app;
	char *name;
	char *image_id;
	char *rootfs;
	char **env;             /* "K=V", NULL-terminated (the image's, then its own) */
	char *workdir;          /* the image's workdir, or NULL */
	oci_mount *mounts;
	size_t n_mounts;
	char *init_hdr;         /* the init frame's header JSON */
	char *pickled;          /* serialized function, or NULL */
	size_t pickled_len;
	double cpu;
	long long memory;
	int timeout;
	bool is_generator, block_network;
	int max_containers;      /* 0 = no cap but the machine */
	int min_containers, buffer_containers;
	double scaledown_window;
	int max_inputs, target_inputs;
	double exit_grace;
	char gpu_type[32];       /* "" when it asked for no GPU */
	int gpu_count;
	bool waiting_capacity;   /* a container it needs does not fit now */
	uint64_t cold_starts;
	double cold_start_ms_sum;
	float cold_ms[64];       /* the last cold starts (ms, to ready), a ring */
	int max_retries;
	double backoff, initial_delay, max_delay;
	fn_chunk *qhead, *qtail; /* queued chunks */
	fn_chunk *delayed;       /* retries waiting for their time */
	uv_timer_t retry_timer;
	uv_timer_t scale_timer;  /* looks again once queued work has waited SCALE_WAIT */
	uint64_t backlog;        /* inputs queued */
	size_t queued;           /* chunks queued */
	uint64_t running;        /* inputs leased to containers */
	fn_container *containers;
	int n_containers, n_starting, n_started_total;
	char *broken;            /* why the function cannot run (import error), or NULL */
	double avg_s;            /* measured seconds per input, 0 = unknown */
	double w_time, w_count;  /* decaying sums behind avg_s: big chunks weigh more */
	double cpu_frac;         /* CPU time per second of work (measured), 0 = unknown */
	fn_web *web;             /* a web endpoint, or NULL */
	/* Deployed apps (deploy.c). */
	json_t *def;             /* the registration it was made from */
	bool retired;            /* an older version's: takes no new inputs, goes when idle */
	bool recreate;           /* starts no container while a retired one of its name runs */
	fn_function *successor;  /* retired: where its inputs go (NULL: nowhere) */
	struct fn_schedule *sched;
	bool snapshot;           /* enable_memory_snapshot: cold starts fork a template */
	bool snap_off;           /* ... which failed: cold starts start containers */
	struct snap_tpl *tpl;    /* its template (snapshot.c), or NULL */
	fn_function *next;       /* in the app */
};

struct fn_app {
	char id[20];
	fn_server *fs;
	char *name;
	bool ephemeral, detached, stopped;
	double created_at, last_hb;
	fn_function *functions;
	int log_fd;
	size_t log_bytes;       /* in the log file now */
	rt_stream log;          /* NDJSON log lines, live (and from before a restart) */
	/* Deployed apps (deploy.c). */
	bool deployed;
	int version;
	char *tag;
	double updated_at;
	json_t *manifest;       /* the version in force */
	fn_function *retired;   /* older versions' functions, freed with the app */
	fn_app *next;
};

struct worker {
	uv_pipe_t h;
	fn_server *fs;
	fn_container *fc;
	struct snap_tpl *tpl;   /* a snapshot template's connection */
	sk_buf rbuf;
	sk_buf obuf;            /* frames corked until the loop's check phase */
	bool closing, corked;
	worker *next;
};

struct fn_server {
	skiff_server *s;
	uv_loop_t *loop;
	char *worker_sock, *api_sock, *app_logs_dir;
	uv_pipe_t listener;
	uv_timer_t tick;        /* heartbeats, idle containers, stuck inputs */
	double heartbeat_timeout, scaledown_window;
	size_t app_log_max;     /* bytes of log kept per app (SKIFF_APP_LOG_MAX, MiB) */
	unsigned long ticks;
	fn_app *apps;
	fn_app *discarded;      /* apps made for a first deploy that failed (freed at exit) */
	fn_call *calls;
	worker *workers;
	struct gateway *gw;
	uv_check_t flush;       /* writes corked frames once per loop turn */
	struct pool_ct *pool;   /* warm containers (pool.c) */
	struct pool_key *pool_keys;
	uv_timer_t pool_timer;
	struct snap_tpl *snaps; /* snapshot templates (snapshot.c) */
	bool stopping;
};

/* functions.c */
fn_blob *blob_new(char *base, size_t len);
fn_blob *blob_ref(fn_blob *b);
void blob_unref(fn_blob *b);
uint32_t get_u32(const unsigned char *p);
void put_u32(unsigned char *p, uint32_t v);
void add_record(sk_buf *b, uint32_t idx, uint8_t status, const void *payload, size_t len);
char *system_error_json(const char *kind, const char *message);
fn_app *app_find(fn_server *fs, const char *id_or_name);
/* id: the app's id, or NULL for a new one. */
fn_app *app_create(fn_server *fs, const char *name, const char *id, bool ephemeral, bool detached);
void app_stop(fn_app *a, const char *why);
/* Stops a and takes it off the list (a first deploy that failed). */
void app_discard(fn_app *a);
void app_log_line(fn_app *a, const char *function, const char *container, int fd,
		  const char *text, size_t len);
fn_call *call_new(fn_function *fn, enum call_kind kind);
fn_call *call_find(fn_server *fs, const char *id);
void call_maybe_free(fn_call *call);
void call_grow(fn_call *call, uint32_t total);
void call_output(fn_call *call, uint32_t idx, uint8_t status, const void *payload, size_t len);
/* A status-6 record: count consecutive successes from idx in one payload. */
void call_output_batch(fn_call *call, uint32_t idx, uint32_t count, const void *payload, size_t len);
void call_fail_all(fn_call *call, const char *kind, const char *message);
void call_poll(fn_call *call, http_req *req, double timeout);
void call_result(fn_call *call, http_req *req, double timeout);
void call_cancel(fn_call *call);
void call_set_last(fn_call *call);

/* fn_sched.c */
fn_function *function_find(fn_server *fs, const char *id);
/* id: the function's id, or NULL for a new one. */
int function_register(fn_server *fs, json_t *def, const char *id, fn_function **out, sk_error *err);
/* Retires fn (an older version): queued work moves to successor (or fails when NULL). */
void function_retire(fn_function *fn, fn_function *successor);
/* A retired function with no container left: off the app's list. */
void function_reap(fn_function *fn);
/* functions.c: frees a function's own fields and it (not its containers or chunks). */
void function_free(fn_function *fn);
/* Queues a chunk (taking a reference on blob); fails it at once when the function is broken. */
void function_enqueue(fn_function *fn, fn_call *call, uint32_t start, uint32_t count, fn_blob *blob,
		      size_t off, size_t len);
void function_pump(fn_function *fn);
/* Starts containers until n are up or starting (a rolling deploy replaces the old ones' count). */
void function_prewarm(fn_function *fn, int n);
int function_wanted(const fn_function *fn);
int autoscaler_parse(fn_function *fn, const json_t *j, sk_error *err);
void container_stop(fn_container *fc, double grace);
void function_stop(fn_function *fn, const char *why);
uint32_t function_chunk_hint(const fn_function *fn);
void container_frame(fn_container *fc, json_t *hdr, const unsigned char *body, size_t len);
/* fn cannot run (its import failed): what waits fails with why; nothing starts. */
void function_broken(fn_function *fn, const char *why);
void container_attach(fn_server *fs, worker *w, const char *id, const char *token);
void chunk_free(fn_chunk *ch);
/* A container's cold start, broken down (NULL before it was ready). */
json_t *cold_start_json(const fn_container *fc);
/* Median and 90th percentile of the function's last cold starts (ms); 0 when none. */
void cold_start_stats(const fn_function *fn, double *median, double *p90);

/* fn_worker.c */
int worker_listen(fn_server *fs, sk_error *err);
void worker_close_all(fn_server *fs);
void worker_send(worker *w, json_t *hdr, fn_blob *blob, const void *body, size_t len);
void worker_close(worker *w);
/* Queues a frame whose header is JSON text; written at the end of this loop turn. */
void worker_send_corked(worker *w, const char *hdr, size_t hl, const void *body, size_t len);

/* pool.c: warm containers, taken by cold starts */
void pool_fill(fn_function *fn);
/* Makes a warm container fc's (ids, runtime container, worker); false: start one. */
bool pool_take(fn_function *fn, fn_container *fc);
bool pool_attach(fn_server *fs, worker *w, const char *id, const char *token);
void pool_worker_gone(fn_server *fs, worker *w);
bool pool_exited(fn_server *fs, rt_container *c);
void pool_release_dir(const char *dir);
void pool_tick(fn_server *fs);
json_t *pool_container_json(fn_server *fs, rt_container *c);
void pool_free(fn_server *fs);

/* fn_sched.c: a container's output (fd 1 or 2) into its app's log, a whole line at a
 * time (partial ones kept in line[fd == 2]); _end flushes what is left and frees them. */
void output_lines(fn_function *fn, const char *container, sk_buf line[2], int fd,
		  const char *data, size_t len);
void output_lines_end(fn_function *fn, const char *container, sk_buf line[2]);
/* fn_sched.c: the last 1500 bytes of a container's output */
char *output_tail(rt_container *c);
/* fn_sched.c: a new function container's id ("ct-" and 16 hex digits) and token (32) */
void container_ids(char id[20], char token[33]);
/* fn_sched.c: a container's environment ("K=V", NULL-terminated, each freed by the caller) */
char **container_env(fn_function *fn, const fn_container *fc);

/* pool.c: a host folder made a shared mount point (mounts on it reach rslave copies) */
int pool_shared_dir(const char *d, sk_error *err);

/* snapshot.c: memory snapshots -- cold starts that fork a template process */
/* A cold start of fn as a fork of its template (made first when needed); false: start one. */
bool snap_take(fn_function *fn, fn_container *fc);
/* A template's hello; true when id is one. */
bool snap_attach(fn_server *fs, worker *w, const char *id, const char *token);
/*
 * fc (a fork) said hello on w: its process becomes its container's, moved into
 * its box on the thread pool, then container_adopted(fc); false: it was refused.
 */
bool snap_adopt(fn_container *fc, worker *w);
/* fn_sched.c: a fork is in its box: it gets its init frame. */
void container_adopted(fn_container *fc);
void snap_frame(struct snap_tpl *t, json_t *hdr);
void snap_worker_gone(struct snap_tpl *t);
/* w was a spare fork's (waiting to be taken): it goes.  False: not one. */
bool snap_spare_worker_gone(fn_server *fs, worker *w);
bool snap_exited(fn_server *fs, rt_container *c);
json_t *snap_container_json(fn_server *fs, rt_container *c);
/* fn takes no more cold starts (retired or stopped): its template goes once no fork runs. */
void snap_drop(fn_function *fn, bool now);
void snap_tick(fn_server *fs);
/* A fork of fn is ready: its template makes the next spare now (not at the next tick). */
void snap_refill(fn_function *fn);
void snap_forget(fn_function *fn);

/* deploy.c */
/* Routes /v1/deployments and the deployed-app verbs under /v1/apps/<name>/. */
bool deploy_api_handle(fn_server *fs, http_req *req, char **parts, size_t n);
/* A spawned call of a deployed function was accepted: kept before it is answered. */
int deploy_call_accepted(fn_call *call, const void *payload, size_t len, sk_error *err);
/* A durable call's result is final. */
void deploy_call_done(fn_call *call);
void deploy_app_stopped(fn_app *a);
/* Adds the deployed-app fields to an app's JSON. */
void deploy_app_json(fn_app *a, json_t *j);
/* Deployed apps stopped (in the store only), for GET /v1/apps. */
void deploy_list_stopped(fn_server *fs, json_t *arr);
void deploy_tick(fn_server *fs);
void schedule_stop(fn_function *fn);
void schedule_free(fn_function *fn);

#endif
