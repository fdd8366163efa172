/*
 * term: the local terminal during `skiff shell` and `skiff container exec`.
 *
 * Raw mode is entered once; the saved settings are put back by term_restore,
 * which is also registered with atexit, so every ordinary way out of the
 * CLI leaves the terminal as it was.  Signals that end the CLI are caught
 * through a self-pipe (term_signals_open) so that the attach loop can restore
 * the terminal and clean up before it exits.
 */
#ifndef SK_CLI_TERM_H
#define SK_CLI_TERM_H

#include <stdbool.h>

#include "util/error.h"

int term_raw_enter(int fd, sk_error *err);
/* Puts back the settings saved by term_raw_enter; safe to call again. */
void term_restore(void);
/* The window size of fd, or false when it is not a terminal. */
bool term_winsize(int fd, int *rows, int *cols);

/*
 * Catches SIGWINCH, SIGINT, SIGTERM, SIGHUP and SIGQUIT; each delivery
 * writes the signal's number as one byte to the returned fd's pipe
 * (non-blocking, O_CLOEXEC).  Returns the read end, or -1 with err.
 */
int term_signals_open(sk_error *err);

#endif
