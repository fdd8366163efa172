/* skiff: the one command users type.  `skiff VERB ...` */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "server/server.h"
#include "util/xalloc.h"

static const char usage[] =
	"Usage: skiff VERB [ARGS...]\n"
	"\n"
	"Skiff runs Python functions in containers, on this machine or a skiff server.\n"
	"\n"
	"Verbs:\n"
	"  server                     run the skiff daemon in the foreground\n"
	"  run FILE[::NAME] [ARGS]    run an app's local entrypoint (an ephemeral app)\n"
	"  deploy FILE [--name N]     deploy an app persistently (new version each time)\n"
	"  serve FILE                 serve an app's web endpoints, reloading on changes\n"
	"  shell                      a shell in a new sandbox\n"
	"  container list|logs|exec|stop\n"
	"  app list|stop|logs|history|rollback\n"
	"  image list|rm|prune         the image and layer cache\n"
	"  secret|volume|dict|queue ...\n"
	"  usage                      resources used and their cost\n"
	"  token create|list|delete   proxy-auth tokens for web endpoints\n"
	"\n"
	"Run 'skiff VERB --help' for a verb's options; 'skiff --version' for the version.\n"
	"\n"
	"Environment:\n"
	"  SKIFF_HOME     state folder (default ~/.skiff)\n"
	"  SKIFF_SERVER   the server: unix:PATH or http://HOST:PORT\n"
	"                 (default unix:$SKIFF_HOME/skiff.sock; a server is started there\n"
	"                 in the background when none answers)\n"
	"  SKIFF_TOKEN    bearer token for an http:// server\n";

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} verbs[] = {
	{ "container", cmd_container },
	{ "shell", cmd_shell },
	{ "run", cmd_run },
	{ "deploy", cmd_run },
	{ "serve", cmd_run },
	{ "app", cmd_app },
	{ "usage", cmd_usage },
	{ "token", cmd_token },
	{ "image", cmd_image },
	{ "secret", cmd_not_implemented },
	{ "volume", cmd_not_implemented },
	{ "dict", cmd_not_implemented },
	{ "queue", cmd_not_implemented },
};

int main(int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : NULL;

	if (!verb) {
		fputs(usage, stderr);
		return 2;
	}
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(verb, "--version") || !strcmp(verb, "-V") || !strcmp(verb, "version")) {
		printf("skiff %s\n", SKIFF_VERSION);
		return 0;
	}
	if (!strcmp(verb, "server"))
		return server_main(argc - 1, argv + 1);
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
		if (strcmp(verb, verbs[i].name))
			continue;
		/* A closed stdout or socket shows up as EPIPE where it is handled. */
		signal(SIGPIPE, SIG_IGN);
		return verbs[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "skiff: unknown command '%s'. Run 'skiff --help'.\n", verb);
	return 2;
}
