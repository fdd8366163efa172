/*
 * GPUs: the machine's inventory (nvidia-smi, or a --fake-gpus stand-in for
 * placement tests), Modal's request strings ("H100", "A100-80GB:2", "any"),
 * and what a container needs to use its GPUs (device nodes, the devices
 * cgroup rules, the driver's libraries, CUDA_VISIBLE_DEVICES).
 */
#ifndef SK_GPU_H
#define SK_GPU_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef struct gpu_dev {
	int index;       /* the device index (/dev/nvidia<index>, CUDA_VISIBLE_DEVICES) */
	char type[32];   /* Modal's name: "H100", "A100-80GB", ... */
	bool fake;       /* from --fake-gpus: nothing to bind */
} gpu_dev;

/* Modal's GPU type for an nvidia-smi product name ("NVIDIA H100 80GB HBM3" -> "H100"). */
void gpu_type_of(const char *product, char *type, size_t len);
/*
 * The machine's GPUs from `nvidia-smi --query-gpu=index,name` output text;
 * *out is an array of *n (free with free()).
 */
int gpu_parse_smi(const char *text, gpu_dev **out, size_t *n, sk_error *err);
/* Runs nvidia-smi when /dev/nvidiactl exists; no GPUs (n = 0) otherwise. */
int gpu_detect(gpu_dev **out, size_t *n, sk_error *err);
/* "H100:2,T4" -> three fake GPUs with indices 0, 1, 2. */
int gpu_parse_fake(const char *spec, gpu_dev **out, size_t *n, sk_error *err);
/*
 * A request: "H100", "h100:2", "A100-80GB:2", "any", "any:4".  type gets
 * the upper-case type ("ANY" for any), count the number (default 1).
 */
int gpu_parse_request(const char *s, char *type, size_t len, int *count, sk_error *err);
/* Whether a GPU of type have satisfies a request for type want. */
bool gpu_matches(const char *want, const char *have);

#endif
