/*
 * SHA-256 (FIPS 180-4), small and dependency-free: enough to name
 * content-addressed things (image ids).  Not constant-time; do not use it
 * where an attacker can time comparisons of secrets.
 *
 * Lifecycle: sha256_init, any number of sha256_update, one sha256_final.
 */
#ifndef SK_SHA256_H
#define SK_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
	uint32_t state[8];
	uint64_t total; /* bytes hashed so far */
	uint8_t block[64];
	size_t fill;    /* bytes waiting in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
/* Writes the 32-byte digest; c must be initialised again before reuse. */
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* The digest of data as 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t len, char out[65]);
/* A digest as 64 lowercase hex digits and a NUL. */
void sha256_to_hex(const uint8_t digest[32], char out[65]);

#endif
