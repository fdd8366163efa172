#include "runtime/stream.h"

#include <string.h>

void rt_stream_init(rt_stream *s)
{
	memset(s, 0, sizeof(*s));
	sk_buf_init(&s->data);
}

void rt_stream_release(rt_stream *s)
{
	while (s->readers)
		rt_reader_detach(s->readers);
	sk_buf_release(&s->data);
}

static void notify_all(rt_stream *s)
{
	rt_reader *r = s->readers, *next;

	/* A reader may detach itself in notify; keep the next one first. */
	while (r) {
		next = r->next;
		r->notify(r);
		r = next;
	}
}

void rt_stream_write(rt_stream *s, const void *data, size_t len)
{
	if (!len || s->eof)
		return;
	sk_buf_add(&s->data, data, len);
	size_t cap = s->cap ? s->cap : RT_STREAM_CAP;
	if (s->data.len > cap) {
		size_t drop = s->data.len - cap / 2;
		/* Whole lines go, so that a reader from the new start sees whole lines. */
		const char *nl = memchr(s->data.base + drop, '\n', s->data.len - drop);
		if (nl)
			drop = (size_t)(nl - s->data.base) + 1;

		sk_buf_consume(&s->data, drop);
		s->dropped += drop;
	}
	notify_all(s);
}

void rt_stream_close(rt_stream *s)
{
	if (s->eof)
		return;
	s->eof = true;
	notify_all(s);
}

bool rt_stream_drop(rt_stream *s)
{
	if (!s->eof || s->readers)
		return false;
	s->dropped += s->data.len;
	sk_buf_release(&s->data);
	return true;
}

size_t rt_stream_end(const rt_stream *s)
{
	return s->dropped + s->data.len;
}

void rt_reader_attach(rt_reader *r, rt_stream *s, size_t pos, rt_notify_fn notify, void *ctx)
{
	r->stream = s;
	r->pos = pos;
	r->notify = notify;
	r->ctx = ctx;
	r->next = s->readers;
	s->readers = r;
}

void rt_reader_detach(rt_reader *r)
{
	rt_reader **pp;

	if (!r->stream)
		return;
	for (pp = &r->stream->readers; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	r->stream = NULL;
	r->next = NULL;
}

const char *rt_reader_peek(rt_reader *r, size_t max, size_t *len)
{
	rt_stream *s = r->stream;
	size_t end, n;

	*len = 0;
	if (!s)
		return NULL;
	if (r->pos < s->dropped)
		r->pos = s->dropped;
	end = rt_stream_end(s);
	if (r->pos >= end)
		return NULL;
	n = end - r->pos;
	*len = n < max ? n : max;
	return s->data.base + (r->pos - s->dropped);
}

bool rt_reader_done(const rt_reader *r)
{
	const rt_stream *s = r->stream;

	return !s || (s->eof && r->pos >= rt_stream_end(s));
}
