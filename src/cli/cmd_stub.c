/*
 * Verbs of later milestones.  They say so instead of pretending to work;
 * run, deploy and serve go to the Python SDK's CLI (`python3 -m skiff.cli`)
 * when it is installed, since those verbs load the user's Python program.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/xalloc.h"

extern char **environ;

static bool wants_help(int argc, char **argv)
{
	return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

int cmd_not_implemented(int argc, char **argv)
{
	if (wants_help(argc, argv)) {
		printf("skiff %s: not implemented yet.\n", argv[0]);
		return 0;
	}
	fprintf(stderr, "skiff: '%s' is not implemented yet\n", argv[0]);
	return 2;
}

/* Whether `python3 -c 'import skiff.cli'` succeeds, quietly. */
static bool python_cli_present(void)
{
	char *args[] = { "python3", "-c", "import skiff.cli", NULL };
	posix_spawn_file_actions_t fa;
	int status;
	pid_t pid;
	int r;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	r = posix_spawnp(&pid, "python3", &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return false;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int cmd_python(int argc, char **argv)
{
	char **args;

	if (!python_cli_present())
		return cmd_not_implemented(argc, argv);
	args = xcalloc((size_t)argc + 4, sizeof(char *));
	args[0] = "python3";
	args[1] = "-m";
	args[2] = "skiff.cli";
	for (int i = 0; i < argc; i++)
		args[3 + i] = argv[i];
	fflush(NULL);
	execvp("python3", args);
	cli_die("cannot run python3: %s", strerror(errno));
}
