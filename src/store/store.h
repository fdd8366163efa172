/*
 * Skiff's durable state: one SQLite database ($SKIFF_HOME/state.db) in WAL
 * mode, with numbered schema migrations recorded in schema_migrations and
 * applied in order at open (each in its own transaction).
 *
 * Thread: the event-loop thread only.  Calls are synchronous; every statement
 * touches a handful of rows, so they cost microseconds (see docs/design.md).
 * Strings returned in records are owned by the record; free with the matching
 * *_release.
 */
#ifndef SK_STORE_H
#define SK_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef struct sk_store sk_store;

/* Opens (creating if needed) the database at path and migrates it. */
int store_open(const char *path, sk_store **out, sk_error *err);
void store_close(sk_store *st);
/* The schema version after migrations (the highest applied). */
int store_schema_version(sk_store *st);

/* Apps ------------------------------------------------------------------ */

typedef struct store_app {
	char *app_id;   /* "ap-<16 hex>" */
	char *name;
	double created_at;
} store_app;

/*
 * Finds the app called name; when missing and create is true, creates it
 * (created = true).  Missing and !create: SK_ERR_NOT_FOUND naming it.
 */
int store_app_lookup(sk_store *st, const char *name, bool create, store_app *out, bool *created,
		     sk_error *err);
/* By id; SK_ERR_NOT_FOUND when unknown. */
int store_app_get(sk_store *st, const char *app_id, store_app *out, sk_error *err);
void store_app_release(store_app *a);

/* Images ---------------------------------------------------------------- */

typedef struct store_image {
	char *image_id;       /* "im-<64 hex>" */
	char *spec_json;      /* the normalised spec, as JSON text */
	char *base;           /* "debian_slim" */
	char *python_version; /* "3.11", or NULL */
	long long size_bytes;
	double created_at;
} store_image;

/* Inserts or replaces the image's row. */
int store_image_put(sk_store *st, const store_image *im, sk_error *err);
/* SK_ERR_NOT_FOUND when unknown. */
int store_image_get(sk_store *st, const char *image_id, store_image *out, sk_error *err);
/* Every image, newest first; *out is an array of *n records (free with store_images_free). */
int store_image_list(sk_store *st, store_image **out, size_t *n, sk_error *err);
int store_image_delete(sk_store *st, const char *image_id, sk_error *err);
void store_image_release(store_image *im);
void store_images_free(store_image *ims, size_t n);

/* Containers ------------------------------------------------------------ */

typedef struct store_container {
	char *container_id;  /* "sb-<16 hex>" */
	char *kind;          /* "sandbox" */
	char *app_id;        /* or NULL */
	char *image_id;
	char *cmd_json;      /* JSON array of strings */
	char *state;         /* "running" | "exited" */
	double cpu;          /* cores; 0 = no limit */
	long long memory;    /* MiB; 0 = no limit */
	int timeout;         /* seconds */
	bool has_returncode;
	int returncode;
	bool oom, timed_out, terminated;
	double created_at;
	double ended_at;     /* 0 while running */
} store_container;

/* Inserts or replaces the container's row (all fields). */
int store_container_put(sk_store *st, const store_container *c, sk_error *err);
int store_container_get(sk_store *st, const char *container_id, store_container *out,
			sk_error *err);
/* Newest first; only state "running" unless all. */
int store_container_list(sk_store *st, bool all, store_container **out, size_t *n,
			 sk_error *err);
/*
 * Crash recovery: every container still "running" (its server died) becomes
 * "exited" with no returncode and terminated = true, ended_at = now.
 * Returns how many rows changed, or -1.
 */
int store_container_mark_lost(sk_store *st, sk_error *err);
void store_container_release(store_container *c);
void store_containers_free(store_container *cs, size_t n);

/* Usage (metering, issue 4) ------------------------------------------------ */

/* One container's life, as metered; the strings are the caller's. */
typedef struct store_usage {
	const char *container_id;
	const char *kind;            /* "function" | "sandbox" */
	const char *app_id;          /* or NULL */
	const char *app_name;        /* or NULL */
	const char *function;        /* or NULL */
	double started_at, updated_at;
	double ended_at;             /* 0 while running */
	double cpu_request;          /* cores, as billed */
	long long memory_request;    /* MiB, as billed */
	int gpus;
	const char *gpu_type;        /* or NULL */
	double cpu_used_s;
	long long memory_peak_bytes;
	long long inputs;
} store_usage;

/*
 * Inserts or rewrites the container's row.  cpu_used_s, memory_peak_bytes
 * and inputs never go down: a smaller value (a cgroup that could not be
 * read) leaves the stored one.
 */
int store_usage_put(sk_store *st, const store_usage *u, sk_error *err);

/* Totals per app, function, kind and GPU type; strings owned by the record. */
typedef struct store_usage_total {
	char *app_id, *app_name, *function, *kind, *gpu_type; /* each may be NULL */
	long long containers;
	double container_seconds;
	double cpu_seconds;          /* billed: per container, max(request x seconds, used) */
	double cpu_used_seconds;
	double memory_gib_seconds;   /* memory_request x seconds */
	double gpu_seconds;          /* gpus x seconds */
	long long inputs;
} store_usage_total;

/*
 * Totals over [since, now] (since 0: from the start) of the app app (an id
 * or a name; NULL: all).  A container counts from max(started_at, since) to
 * min(ended_at, now); one with no end (running, or lost in a crash) to
 * min(updated_at, now).  Ordered by app name, app id, kind, function.
 */
int store_usage_totals(sk_store *st, const char *app, double since, double now,
		       store_usage_total **out, size_t *n, sk_error *err);
void store_usage_totals_free(store_usage_total *ts, size_t n);

/* Proxy-auth tokens for web endpoints (issue 5) ------------------------------ */

/* A token as listed: never its secret, which the store does not keep. */
typedef struct store_token {
	char *token_id;   /* "wk-<16 hex>" */
	char *name;       /* or NULL */
	double created_at;
} store_token;

/*
 * Creates a token: a fresh id ("wk-<16 hex>") and secret ("ws-<32 hex>"),
 * both random.  Only the secret's SHA-256 is stored; *secret_out is the one
 * copy of it (caller frees both strings).  name may be NULL.
 */
int store_token_create(sk_store *st, const char *name, char **id_out, char **secret_out,
		       sk_error *err);
/*
 * 1 when the token id exists and secret is its secret (compared in constant
 * time), 0 when not (or either is NULL), -1 on a database error.  Cheap
 * enough for every request to a protected endpoint.
 */
int store_token_check(sk_store *st, const char *id, const char *secret);
/* Every token, newest first (free with store_tokens_free). */
int store_token_list(sk_store *st, store_token **out, size_t *n, sk_error *err);
/* SK_ERR_NOT_FOUND when unknown. */
int store_token_delete(sk_store *st, const char *id, sk_error *err);
void store_tokens_free(store_token *ts, size_t n);

#endif
