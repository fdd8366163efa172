/*
 * rt_stream: the output of one process stream (stdout, stderr, or a log),
 * kept in memory so that any number of readers can follow it from any offset,
 * live, each at its own pace.
 *
 * Offsets count every byte ever written.  When the kept bytes pass the cap,
 * the oldest are dropped and `dropped` grows; a reader behind it skips ahead.
 * Readers are told (notify) when bytes arrive or the stream ends; they pull
 * with rt_stream_peek and advance their own position.
 *
 * Thread: the event-loop thread only.
 */
#ifndef SK_STREAM_H
#define SK_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

#define RT_STREAM_CAP (64u << 20)

typedef struct rt_stream rt_stream;
typedef struct rt_reader rt_reader;

typedef void (*rt_notify_fn)(rt_reader *r);

struct rt_reader {
	rt_stream *stream;
	size_t pos;         /* next offset to read */
	rt_notify_fn notify;
	void *ctx;
	rt_reader *next;    /* private */
};

struct rt_stream {
	sk_buf data;        /* bytes [dropped, dropped + data.len) */
	size_t dropped;
	size_t cap;         /* bytes kept at most (0: RT_STREAM_CAP); whole lines are dropped */
	bool eof;
	rt_reader *readers;
};

void rt_stream_init(rt_stream *s);
/* Detaches every reader (without notifying) and frees the bytes. */
void rt_stream_release(rt_stream *s);
void rt_stream_write(rt_stream *s, const void *data, size_t len);
void rt_stream_close(rt_stream *s);
size_t rt_stream_end(const rt_stream *s);
/*
 * Frees the kept bytes of an ended stream that no reader follows; offsets
 * stay valid (later readers see the stream as ended).  False if it cannot.
 */
bool rt_stream_drop(rt_stream *s);

void rt_reader_attach(rt_reader *r, rt_stream *s, size_t pos, rt_notify_fn notify, void *ctx);
void rt_reader_detach(rt_reader *r);
/* Bytes available to r (at most max); *len 0 means caught up. */
const char *rt_reader_peek(rt_reader *r, size_t max, size_t *len);
/* True when r has read everything and the stream has ended. */
bool rt_reader_done(const rt_reader *r);

#endif
