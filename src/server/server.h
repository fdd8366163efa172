/*
 * The skiff daemon.  server_main() is `skiff server [options]`: it parses its
 * own options (argv[0] is "server"), runs the event loop in the foreground and
 * returns the process exit status.  Options:
 *   --home DIR        state folder (default $SKIFF_HOME, else ~/.skiff)
 *   --runtime NAME    runc | crun | runsc (default: picked from the cgroup mode)
 *   --log-level L     debug | info | warn | error
 */
#ifndef SK_SERVER_H
#define SK_SERVER_H

int server_main(int argc, char **argv);

/* $SKIFF_HOME or ~/.skiff; caller frees. */
char *server_default_home(void);

#endif
