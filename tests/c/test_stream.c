/*
 * Tests for runtime/stream: readers at any offset, notification on write and
 * close, readers detaching while being notified, the cap dropping the oldest
 * bytes with readers behind skipping ahead, and rt_reader_done.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/stream.h"
#include "util/buf.h"

/* A reader that counts its notifications and gathers what it reads. */
typedef struct sink {
	rt_reader r;
	int notified;
	bool read_on_notify;
	bool detach_on_notify;
	rt_reader *detach_other; /* detached from this reader's notify */
	sk_buf got;
} sink;

static void drain(sink *k)
{
	const char *d;
	size_t n;

	while ((d = rt_reader_peek(&k->r, 3, &n))) {
		sk_buf_add(&k->got, d, n);
		k->r.pos += n;
	}
}

static void on_notify(rt_reader *r)
{
	sink *k = r->ctx;

	k->notified++;
	if (k->read_on_notify)
		drain(k);
	if (k->detach_other)
		rt_reader_detach(k->detach_other);
	if (k->detach_on_notify)
		rt_reader_detach(r);
}

static void sink_attach(sink *k, rt_stream *s, size_t pos)
{
	memset(k, 0, sizeof(*k));
	sk_buf_init(&k->got);
	rt_reader_attach(&k->r, s, pos, on_notify, k);
}

static void sink_release(sink *k)
{
	rt_reader_detach(&k->r);
	sk_buf_release(&k->got);
}

static void test_empty(void **state)
{
	rt_stream s;
	sink k;
	size_t n = 99;

	rt_stream_init(&s);
	assert_int_equal(rt_stream_end(&s), 0);
	sink_attach(&k, &s, 0);
	assert_null(rt_reader_peek(&k.r, 100, &n));
	assert_int_equal(n, 0);
	assert_false(rt_reader_done(&k.r));
	rt_stream_close(&s);
	assert_int_equal(k.notified, 1);
	assert_true(rt_reader_done(&k.r));
	sink_release(&k);
	rt_stream_release(&s);
}

/* Readers may start anywhere, even past the end; peek honours max. */
static void test_readers_at_offsets(void **state)
{
	rt_stream s;
	sink a, b, c;
	const char *d;
	size_t n;

	rt_stream_init(&s);
	rt_stream_write(&s, "hello ", 6);
	sink_attach(&a, &s, 0);
	sink_attach(&b, &s, 4);
	sink_attach(&c, &s, 9); /* not written yet */
	rt_stream_write(&s, "world", 5);
	assert_int_equal(rt_stream_end(&s), 11);

	d = rt_reader_peek(&a.r, 100, &n);
	assert_int_equal(n, 11);
	assert_memory_equal(d, "hello world", 11);
	d = rt_reader_peek(&a.r, 4, &n);
	assert_int_equal(n, 4);
	assert_memory_equal(d, "hell", 4);
	/* Peeking does not move: the reader advances its own position. */
	a.r.pos += 4;
	d = rt_reader_peek(&a.r, 100, &n);
	assert_int_equal(n, 7);
	assert_memory_equal(d, "o world", 7);

	d = rt_reader_peek(&b.r, 100, &n);
	assert_int_equal(n, 7);
	assert_memory_equal(d, "o world", 7);
	d = rt_reader_peek(&c.r, 100, &n);
	assert_int_equal(n, 2);
	assert_memory_equal(d, "ld", 2);

	/* A reader beyond the end sees nothing until the stream reaches it. */
	c.r.pos = 20;
	assert_null(rt_reader_peek(&c.r, 100, &n));
	assert_int_equal(n, 0);
	rt_stream_write(&s, "0123456789", 10);
	d = rt_reader_peek(&c.r, 100, &n);
	assert_int_equal(n, 1);
	assert_memory_equal(d, "9", 1);

	sink_release(&a);
	sink_release(&b);
	sink_release(&c);
	rt_stream_release(&s);
}

/* Every reader hears of every write and of the close, once; empty writes and
 * writes after the close are ignored. */
static void test_notify(void **state)
{
	rt_stream s;
	sink a, b;

	rt_stream_init(&s);
	sink_attach(&a, &s, 0);
	sink_attach(&b, &s, 0);
	a.read_on_notify = b.read_on_notify = true;

	rt_stream_write(&s, "abc", 3);
	assert_int_equal(a.notified, 1);
	assert_int_equal(b.notified, 1);
	rt_stream_write(&s, "", 0);
	assert_int_equal(a.notified, 1);
	rt_stream_write(&s, "defgh", 5);
	assert_int_equal(a.notified, 2);
	assert_int_equal(b.notified, 2);
	assert_int_equal(a.got.len, 8);
	assert_memory_equal(a.got.base, "abcdefgh", 8);
	assert_int_equal(b.got.len, 8);
	assert_false(rt_reader_done(&a.r));

	rt_stream_close(&s);
	assert_int_equal(a.notified, 3);
	assert_int_equal(b.notified, 3);
	assert_true(rt_reader_done(&a.r));
	rt_stream_close(&s);
	assert_int_equal(a.notified, 3);
	rt_stream_write(&s, "late", 4);
	assert_int_equal(a.notified, 3);
	assert_int_equal(rt_stream_end(&s), 8);

	/* A detached reader is not notified. */
	rt_stream_release(&s);
	rt_stream_init(&s);
	sink_release(&a);
	sink_release(&b);
	sink_attach(&a, &s, 0);
	sink_attach(&b, &s, 0);
	rt_reader_detach(&b.r);
	rt_reader_detach(&b.r); /* twice is harmless */
	rt_stream_write(&s, "x", 1);
	assert_int_equal(a.notified, 1);
	assert_int_equal(b.notified, 0);
	sink_release(&a);
	sink_release(&b);
	rt_stream_release(&s);
}

/* A reader may detach itself while being notified; the others still hear. */
static void test_detach_self_during_notify(void **state)
{
	rt_stream s;
	sink k[3];

	rt_stream_init(&s);
	for (int i = 0; i < 3; i++)
		sink_attach(&k[i], &s, 0);
	k[1].detach_on_notify = true;
	rt_stream_write(&s, "abc", 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(k[i].notified, 1);
	assert_null(k[1].r.stream);
	rt_stream_write(&s, "d", 1);
	assert_int_equal(k[0].notified, 2);
	assert_int_equal(k[1].notified, 1);
	assert_int_equal(k[2].notified, 2);

	/* Every reader detaching itself at the close empties the list. */
	k[0].detach_on_notify = k[2].detach_on_notify = true;
	rt_stream_close(&s);
	assert_null(s.readers);
	assert_int_equal(k[0].notified, 3);
	assert_int_equal(k[2].notified, 3);
	/* A detached reader counts as done: it will read nothing more. */
	assert_true(rt_reader_done(&k[0].r));
	for (int i = 0; i < 3; i++)
		sink_release(&k[i]);
	rt_stream_release(&s);
}

/*
 * A reader may also detach one that has already been notified (an attach
 * session closing its other reader, say): that one hears nothing more.
 */
static void test_detach_other_during_notify(void **state)
{
	rt_stream s;
	sink k[3];

	rt_stream_init(&s);
	/* Attach puts readers at the head: notify order is k[2], k[1], k[0]. */
	for (int i = 0; i < 3; i++)
		sink_attach(&k[i], &s, 0);
	k[1].detach_other = &k[2].r;
	rt_stream_write(&s, "abc", 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(k[i].notified, 1);
	assert_null(k[2].r.stream);
	k[1].detach_other = NULL;
	rt_stream_close(&s);
	assert_int_equal(k[0].notified, 2);
	assert_int_equal(k[1].notified, 2);
	assert_int_equal(k[2].notified, 1);
	for (int i = 0; i < 3; i++)
		sink_release(&k[i]);
	rt_stream_release(&s);
}

/* Release detaches every reader without telling them. */
static void test_release_detaches(void **state)
{
	rt_stream s;
	sink a, b;

	rt_stream_init(&s);
	sink_attach(&a, &s, 0);
	sink_attach(&b, &s, 0);
	rt_stream_write(&s, "x", 1);
	rt_stream_release(&s);
	assert_null(a.r.stream);
	assert_null(b.r.stream);
	assert_int_equal(a.notified, 1);
	assert_true(rt_reader_done(&a.r));
	sink_release(&a);
	sink_release(&b);
}

/*
 * Past RT_STREAM_CAP the oldest bytes go, down to half the cap; offsets keep
 * counting every byte.  A reader behind skips to the oldest byte kept, one
 * ahead keeps its place.
 */
static void test_cap_drops_old_bytes(void **state)
{
	const size_t chunk = 1 << 20;
	char *buf = malloc(chunk);
	rt_stream s;
	sink behind, ahead;
	const char *d;
	size_t n, total = 0;

	assert_non_null(buf);
	rt_stream_init(&s);
	sink_attach(&behind, &s, 0);
	sink_attach(&ahead, &s, 0);
	for (size_t i = 0; total + chunk <= RT_STREAM_CAP; i++) {
		memset(buf, 'a' + (int)(i % 26), chunk);
		rt_stream_write(&s, buf, chunk);
		total += chunk;
	}
	assert_int_equal(s.dropped, 0);
	assert_int_equal(s.data.len, RT_STREAM_CAP);
	ahead.r.pos = RT_STREAM_CAP - 10;

	/* One byte over the cap. */
	rt_stream_write(&s, "!", 1);
	total++;
	assert_int_equal(rt_stream_end(&s), total);
	assert_int_equal(s.data.len, RT_STREAM_CAP / 2);
	assert_int_equal(s.dropped, total - RT_STREAM_CAP / 2);
	assert_int_equal(behind.notified, RT_STREAM_CAP / chunk + 1);

	d = rt_reader_peek(&behind.r, 4, &n);
	assert_int_equal(behind.r.pos, s.dropped);
	assert_int_equal(n, 4);
	/* The first byte kept is the one written at offset `dropped`. */
	assert_int_equal(d[0], 'a' + (int)((s.dropped / chunk) % 26));

	d = rt_reader_peek(&ahead.r, 100, &n);
	assert_int_equal(ahead.r.pos, RT_STREAM_CAP - 10);
	assert_int_equal(n, 11);
	assert_int_equal(d[10], '!');
	ahead.r.pos += n;
	assert_null(rt_reader_peek(&ahead.r, 100, &n));

	/* A reader attached at 0 now starts at the oldest byte kept. */
	rt_stream_close(&s);
	{
		sink late;

		sink_attach(&late, &s, 0);
		assert_false(rt_reader_done(&late.r));
		assert_non_null(rt_reader_peek(&late.r, 1, &n));
		assert_int_equal(late.r.pos, s.dropped);
		late.r.pos = rt_stream_end(&s);
		assert_true(rt_reader_done(&late.r));
		sink_release(&late);
	}
	sink_release(&behind);
	sink_release(&ahead);
	rt_stream_release(&s);
	free(buf);
}

/* Done only when the stream has ended and everything was read. */
static void test_reader_done(void **state)
{
	rt_stream s;
	sink k;

	rt_stream_init(&s);
	sink_attach(&k, &s, 0);
	rt_stream_write(&s, "abc", 3);
	assert_false(rt_reader_done(&k.r));
	k.r.pos = 3;
	assert_false(rt_reader_done(&k.r)); /* caught up, but more may come */
	rt_stream_write(&s, "de", 2);
	rt_stream_close(&s);
	assert_false(rt_reader_done(&k.r)); /* ended, but two bytes unread */
	k.r.pos = 5;
	assert_true(rt_reader_done(&k.r));
	sink_release(&k);
	rt_stream_release(&s);
}

/* Dropping an ended stream's bytes: refused while open or followed; offsets stay. */
static void test_drop(void **state)
{
	rt_stream s;
	sink k;
	size_t n;

	rt_stream_init(&s);
	rt_stream_write(&s, "hello", 5);
	assert_false(rt_stream_drop(&s)); /* still open */
	rt_stream_close(&s);
	sink_attach(&k, &s, 0);
	assert_false(rt_stream_drop(&s)); /* a reader follows it */
	sink_release(&k);
	assert_true(rt_stream_drop(&s));
	assert_int_equal(rt_stream_end(&s), 5);
	assert_int_equal(s.data.len, 0);
	sink_attach(&k, &s, 0);
	assert_null(rt_reader_peek(&k.r, 10, &n));
	assert_int_equal(n, 0);
	assert_true(rt_reader_done(&k.r)); /* skipped to the end, which has come */
	sink_release(&k);
	rt_stream_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_readers_at_offsets),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_detach_self_during_notify),
		cmocka_unit_test(test_detach_other_during_notify),
		cmocka_unit_test(test_release_detaches),
		cmocka_unit_test(test_cap_drops_old_bytes),
		cmocka_unit_test(test_reader_done),
		cmocka_unit_test(test_drop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
