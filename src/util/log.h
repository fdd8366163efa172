/*
 * Server logging: one line per event to stderr, with a timestamp and level.
 * Only the server and CLI edges log; library code returns sk_error instead.
 * Never log secrets or container environments.
 */
#ifndef SK_LOG_H
#define SK_LOG_H

enum sk_log_level { SK_LOG_DEBUG, SK_LOG_INFO, SK_LOG_WARN, SK_LOG_ERROR };

void sk_log_set_level(enum sk_log_level level);
void sk_log(enum sk_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) sk_log(SK_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) sk_log(SK_LOG_INFO, __VA_ARGS__)
#define log_warn(...) sk_log(SK_LOG_WARN, __VA_ARGS__)
#define log_error(...) sk_log(SK_LOG_ERROR, __VA_ARGS__)

#endif
