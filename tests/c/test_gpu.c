/* Tests for runtime/gpu: nvidia-smi names, Modal's request strings, --fake-gpus. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "runtime/gpu.h"

static void test_type_of(void **state)
{
	char t[32];

	gpu_type_of("NVIDIA H100 80GB HBM3", t, sizeof(t));
	assert_string_equal(t, "H100");
	gpu_type_of("NVIDIA H200", t, sizeof(t));
	assert_string_equal(t, "H200");
	gpu_type_of("NVIDIA A100-SXM4-80GB", t, sizeof(t));
	assert_string_equal(t, "A100-80GB");
	gpu_type_of("NVIDIA A100-PCIE-40GB", t, sizeof(t));
	assert_string_equal(t, "A100-40GB");
	gpu_type_of("Tesla T4", t, sizeof(t));
	assert_string_equal(t, "T4");
	gpu_type_of("NVIDIA L40S", t, sizeof(t));
	assert_string_equal(t, "L40S");
	gpu_type_of("NVIDIA L4", t, sizeof(t));
	assert_string_equal(t, "L4");
	gpu_type_of("NVIDIA RTX 6000 Ada", t, sizeof(t));
	assert_string_equal(t, "RTX 6000 ADA");
}

static void test_parse_smi(void **state)
{
	gpu_dev *d;
	size_t n;

	assert_int_equal(gpu_parse_smi("0, NVIDIA H200\n1, NVIDIA H200\ngarbage\n", &d, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(d[1].index, 1);
	assert_string_equal(d[0].type, "H200");
	assert_false(d[0].fake);
	free(d);
	assert_int_equal(gpu_parse_smi("", &d, &n, NULL), 0);
	assert_int_equal(n, 0);
	free(d);
}

static void test_requests(void **state)
{
	char t[32];
	int c;
	sk_error err;

	assert_int_equal(gpu_parse_request("h100", t, sizeof(t), &c, &err), 0);
	assert_string_equal(t, "H100");
	assert_int_equal(c, 1);
	assert_int_equal(gpu_parse_request("A100-80GB:2", t, sizeof(t), &c, &err), 0);
	assert_string_equal(t, "A100-80GB");
	assert_int_equal(c, 2);
	assert_int_equal(gpu_parse_request("any:4", t, sizeof(t), &c, &err), 0);
	assert_string_equal(t, "ANY");
	assert_int_equal(c, 4);
	assert_int_equal(gpu_parse_request("H100:0", t, sizeof(t), &c, &err), -1);
	assert_non_null(strstr(err.msg, "count"));
	assert_int_equal(gpu_parse_request("V100", t, sizeof(t), &c, &err), -1);
	assert_non_null(strstr(err.msg, "unknown GPU type V100"));
	assert_int_equal(gpu_parse_request("", t, sizeof(t), &c, &err), -1);
	assert_true(gpu_matches("ANY", "T4"));
	assert_true(gpu_matches("A100", "A100-80GB"));
	assert_true(gpu_matches("H100", "H100"));
	assert_false(gpu_matches("H100", "H200"));
	assert_false(gpu_matches("A100-80GB", "A100-40GB"));
}

static void test_fake(void **state)
{
	gpu_dev *d;
	size_t n;
	sk_error err;

	assert_int_equal(gpu_parse_fake("H100:2,t4", &d, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(d[0].type, "H100");
	assert_string_equal(d[2].type, "T4");
	assert_int_equal(d[2].index, 2);
	assert_true(d[2].fake);
	free(d);
	assert_int_equal(gpu_parse_fake("any:2", &d, &n, &err), -1);
	assert_int_equal(gpu_parse_fake("Q9", &d, &n, &err), -1);
	assert_non_null(strstr(err.msg, "--fake-gpus"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_of),
		cmocka_unit_test(test_parse_smi),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_fake),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
