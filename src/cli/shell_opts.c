#include "cli/shell_opts.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>

static int parse_positive_long(const char *name, const char *s, long max, long *out,
			       sk_error *err)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > max)
		return sk_error_set(err, SK_ERR_INVALID, "--%s must be a whole number from 1 to %ld, got '%s'",
				    name, max, s);
	*out = v;
	return 0;
}

static int parse_cpu(const char *s, double *out, sk_error *err)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0)
		return sk_error_set(err, SK_ERR_INVALID,
				    "--cpu must be a number of cores > 0 (such as 0.5 or 2), got '%s'", s);
	*out = v;
	return 0;
}

int shell_opts_parse(int argc, char **argv, shell_opts *o, sk_error *err)
{
	static const struct option longopts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "python-version", required_argument, NULL, 'p' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "cmd", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	*o = (shell_opts){ .image = "debian_slim", .timeout = SHELL_DEFAULT_TIMEOUT };
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': o->image = optarg; break;
		case 'p': o->python_version = optarg; break;
		case 'C': o->cmd = optarg; break;
		case 'h': o->help = true; return 0;
		case 'c':
			if (parse_cpu(optarg, &o->cpu, err) < 0)
				return -1;
			break;
		case 'm':
			if (parse_positive_long("memory", optarg, 1L << 30, &o->memory, err) < 0)
				return -1;
			break;
		case 't':
			if (parse_positive_long("timeout", optarg, 86400, &o->timeout, err) < 0)
				return -1;
			break;
		case ':':
			return sk_error_set(err, SK_ERR_INVALID, "option '%s' needs a value",
					    argv[optind - 1]);
		default:
			return sk_error_set(err, SK_ERR_INVALID, "unknown option '%s'",
					    argv[optind - 1]);
		}
	}
	if (optind < argc)
		return sk_error_set(err, SK_ERR_INVALID,
				    "unexpected argument '%s' (to run a command, use --cmd '%s')",
				    argv[optind], argv[optind]);
	return 0;
}
