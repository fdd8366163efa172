/*
 * The durable side of deployed apps (issue 7): deployments and their
 * versions, when scheduled functions last ran, and the spawned inputs of
 * deployed functions until their results have been kept long enough.
 * Tables: migration 4 in store.c.
 *
 * Thread: the event-loop thread only; calls are synchronous.  Getters
 * answer 1 (found), 0 (not there) or -1 (error, in err).
 */
#ifndef SK_STORE_DEPLOY_H
#define SK_STORE_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>

#include "store/store.h"

sqlite3 *store_sqlite(sk_store *st);

typedef struct store_deployment {
	char *name, *app_id, *state; /* state: "deployed" or "stopped" */
	int version;                 /* the version in force */
	double created_at, updated_at;
} store_deployment;

int store_deployment_get(sk_store *st, const char *name, store_deployment *out, sk_error *err);
int store_deployment_list(sk_store *st, store_deployment **out, size_t *n, sk_error *err);
/* Inserts or updates name's row (created_at is kept on update). */
int store_deployment_put(sk_store *st, const store_deployment *d, sk_error *err);
void store_deployment_release(store_deployment *d);
void store_deployments_free(store_deployment *ds, size_t n);

typedef struct store_version {
	char *name;
	int version;
	char *tag;      /* or NULL */
	char *strategy; /* "rolling" | "recreate" */
	char *digest;
	char *manifest; /* JSON */
	int rollback_of; /* 0: none */
	double created_at;
} store_version;

int store_version_put(sk_store *st, const store_version *v, sk_error *err);
int store_version_get(sk_store *st, const char *name, int version, store_version *out,
		      sk_error *err);
/* Newest first; without manifests when !manifests. */
int store_version_list(sk_store *st, const char *name, bool manifests, store_version **out,
		       size_t *n, sk_error *err);
/* The highest version number of name, 0 when it has none (or on error). */
int store_version_latest(sk_store *st, const char *name);
void store_version_release(store_version *v);
void store_versions_free(store_version *vs, size_t n);

int store_schedule_last(sk_store *st, const char *app, const char *function, double *last,
			sk_error *err);
int store_schedule_set(sk_store *st, const char *app, const char *function, double last,
		       sk_error *err);

typedef struct store_dcall {
	char *call_id, *app_name, *function;
	void *payload;
	size_t payload_len;
	bool done;
	int status;
	void *result;
	size_t result_len;
	double created_at, done_at;
} store_dcall;

int store_dcall_put(sk_store *st, const char *call_id, const char *app, const char *function,
		    const void *payload, size_t len, double now, sk_error *err);
int store_dcall_done(sk_store *st, const char *call_id, int status, const void *result, size_t len,
		     double now, sk_error *err);
int store_dcall_delete(sk_store *st, const char *call_id, sk_error *err);
/* Deletes the calls done before `before`. */
int store_dcall_expire(sk_store *st, double before, sk_error *err);
int store_dcall_list(sk_store *st, store_dcall **out, size_t *n, sk_error *err);
void store_dcalls_free(store_dcall *cs, size_t n);

#endif
