/*
 * libFuzzer target for the mountinfo parser (cg_parse_mountinfo in
 * src/runtime/cgroup.c): the input, cut at its first NUL as the file read
 * from /proc would be, parsed with a valid instance name; what it finds must
 * hang together, and is released.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cgroup.h"
#include "util/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	cg_host h;
	sk_error err;

	memcpy(text, data, size);
	text[size] = 0;
	if (cg_parse_mountinfo(text, "fuzz", &h, &err) == 0) {
		if (!h.base || strcmp(h.base, "skiff/fuzz") || (!h.unified && !h.memory_v1) ||
		    (h.mode == CG_MODE_V2) != (!h.memory_v1) || (h.n_v1 && !h.v1_mounts))
			abort();
		bool acct_listed = !h.cpuacct_v1;
		for (size_t i = 0; i < h.n_v1; i++) {
			if (!h.v1_mounts[i])
				abort();
			acct_listed |= h.cpuacct_v1 && !strcmp(h.cpuacct_v1, h.v1_mounts[i]);
		}
		if (!acct_listed)
			abort();
		cg_mode_name(h.mode);
		cg_host_release(&h);
	}
	free(text);
	return 0;
}
