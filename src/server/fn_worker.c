/*
 * The worker socket: function containers connect here (bind-mounted as
 * /skiff/run/worker.sock) and speak the framed protocol of docs/protocol.md:
 * u32 hdr_len | u32 body_len | JSON header | body.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/fn_internal.h"
#include "util/log.h"
#include "util/xalloc.h"

#define MAX_HDR (1u << 20)
#define MAX_BODY (2u << 30)

typedef struct wframe {
	uv_write_t w;
	fn_blob *blob;
	char head[];
} wframe;

static void write_done(uv_write_t *w, int status)
{
	wframe *f = (wframe *)w;

	(void)status;
	blob_unref(f->blob);
	free(f);
}

typedef struct owrite {
	uv_write_t w;
	char *base;
} owrite;

static void owrite_done(uv_write_t *w, int status)
{
	owrite *o = (owrite *)w;

	(void)status;
	free(o->base);
	free(o);
}

/* Writes the corked frames now. */
static void flush_obuf(worker *w)
{
	owrite *o;
	size_t len;
	uv_buf_t b;

	w->corked = false;
	if (!w->obuf.len || w->closing)
		return;
	o = xmalloc(sizeof(*o));
	o->base = sk_buf_detach(&w->obuf, &len);
	b = uv_buf_init(o->base, (unsigned)len);
	if (uv_write(&o->w, (uv_stream_t *)&w->h, &b, 1, owrite_done) < 0) {
		free(o->base);
		free(o);
		worker_close(w);
	}
}

void worker_send_corked(worker *w, const char *hdr, size_t hl, const void *body, size_t len)
{
	unsigned char lens[8];

	if (!w || w->closing)
		return;
	put_u32(lens, (uint32_t)hl);
	put_u32(lens + 4, (uint32_t)len);
	sk_buf_add(&w->obuf, lens, 8);
	sk_buf_add(&w->obuf, hdr, hl);
	if (len)
		sk_buf_add(&w->obuf, body, len);
	w->corked = true;
	if (w->obuf.len >= (256u << 10))
		flush_obuf(w);
}

static void on_check(uv_check_t *h)
{
	fn_server *fs = h->data;

	for (worker *w = fs->workers; w; w = w->next)
		if (w->corked)
			flush_obuf(w);
}

void worker_send(worker *w, json_t *hdr, fn_blob *blob, const void *body, size_t len)
{
	char *h = json_dumps(hdr, JSON_COMPACT);
	size_t hl = strlen(h);
	wframe *f;
	uv_buf_t bufs[2];
	unsigned n = 1;

	json_decref(hdr);
	if (!w || w->closing) {
		free(h);
		return;
	}
	if (w->obuf.len)
		flush_obuf(w); /* frames go out in order */
	f = xmalloc(sizeof(*f) + 8 + hl + (blob ? 0 : len));
	put_u32((unsigned char *)f->head, (uint32_t)hl);
	put_u32((unsigned char *)f->head + 4, (uint32_t)len);
	memcpy(f->head + 8, h, hl);
	free(h);
	f->blob = blob ? blob_ref(blob) : NULL;
	if (blob || !len) {
		bufs[0] = uv_buf_init(f->head, (unsigned)(8 + hl));
		if (len)
			bufs[n++] = uv_buf_init((char *)body, (unsigned)len);
	} else {
		memcpy(f->head + 8 + hl, body, len);
		bufs[0] = uv_buf_init(f->head, (unsigned)(8 + hl + len));
	}
	if (uv_write(&f->w, (uv_stream_t *)&w->h, bufs, n, write_done) < 0) {
		blob_unref(f->blob);
		free(f);
		worker_close(w);
	}
}

static void closed(uv_handle_t *h)
{
	worker *w = h->data;

	sk_buf_release(&w->rbuf);
	sk_buf_release(&w->obuf);
	free(w);
}

void worker_close(worker *w)
{
	fn_server *fs = w->fs;

	if (w->closing)
		return;
	w->closing = true;
	for (worker **pp = &fs->workers; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	if (w->fc) {
		/* The container lost its connection: it cannot go on; its exit requeues. */
		if (w->fc->rc && w->fc->state != FC_DEAD)
			rt_container_kill(w->fc->rc);
		w->fc->w = NULL;
		w->fc = NULL;
	} else if (w->tpl) {
		snap_worker_gone(w->tpl);
		w->tpl = NULL;
	} else if (!snap_spare_worker_gone(fs, w)) {
		pool_worker_gone(fs, w);
	}
	uv_close((uv_handle_t *)&w->h, closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	worker *w = h->data;
	size_t want = 65536;

	/* Read big frames straight into place. */
	if (w->rbuf.len >= 8) {
		size_t total = 8 + (size_t)get_u32((unsigned char *)w->rbuf.base) +
			       get_u32((unsigned char *)w->rbuf.base + 4);
		if (total > w->rbuf.len && total - w->rbuf.len > want)
			want = total - w->rbuf.len;
	}
	sk_buf_grow(&w->rbuf, want);
	buf->base = w->rbuf.base + w->rbuf.len;
	buf->len = w->rbuf.cap - w->rbuf.len - 1;
}

static void on_frame(worker *w, const char *hdr, size_t hl, const unsigned char *body, size_t bl)
{
	json_error_t jerr;
	json_t *h = json_loadb(hdr, hl, 0, &jerr);
	const char *t = h ? json_string_value(json_object_get(h, "t")) : NULL;

	if (!t) {
		log_warn("worker: bad frame header (%s); closing the connection", h ? "no type" : jerr.text);
		json_decref(h);
		worker_close(w);
		return;
	}
	if (w->tpl) {
		snap_frame(w->tpl, h);
	} else if (!w->fc) {
		const char *id = json_string_value(json_object_get(h, "container_id"));
		const char *token = json_string_value(json_object_get(h, "token"));
		if (strcmp(t, "hello") || !id || !token)
			worker_close(w);
		else
			container_attach(w->fs, w, id, token);
	} else {
		container_frame(w->fc, h, body, bl);
	}
	json_decref(h);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	worker *w = s->data;
	size_t off = 0;

	(void)buf;
	if (n < 0) {
		worker_close(w);
		return;
	}
	w->rbuf.len += (size_t)n;
	while (!w->closing && w->rbuf.len - off >= 8) {
		const unsigned char *p = (unsigned char *)w->rbuf.base + off;
		uint32_t hl = get_u32(p), bl = get_u32(p + 4);

		if (hl > MAX_HDR || bl > MAX_BODY) {
			log_warn("worker: frame too large (%u + %u bytes); closing", hl, bl);
			worker_close(w);
			return;
		}
		if (w->rbuf.len - off < 8 + (size_t)hl + bl)
			break;
		on_frame(w, (const char *)p + 8, hl, p + 8 + hl, bl);
		off += 8 + (size_t)hl + bl;
	}
	if (!w->closing && off)
		sk_buf_consume(&w->rbuf, off);
}

static void on_connection(uv_stream_t *server, int status)
{
	fn_server *fs = server->data;
	worker *w;

	if (status < 0)
		return;
	w = xcalloc(1, sizeof(*w));
	w->fs = fs;
	uv_pipe_init(fs->loop, &w->h, 0);
	w->h.data = w;
	if (uv_accept(server, (uv_stream_t *)&w->h) < 0) {
		uv_close((uv_handle_t *)&w->h, closed);
		return;
	}
	w->next = fs->workers;
	fs->workers = w;
	uv_read_start((uv_stream_t *)&w->h, alloc_cb, on_read);
}

int worker_listen(fn_server *fs, sk_error *err)
{
	int rc;
	mode_t old;

	unlink(fs->worker_sock);
	uv_pipe_init(fs->loop, &fs->listener, 0);
	fs->listener.data = fs;
	old = umask(0177);
	rc = uv_pipe_bind(&fs->listener, fs->worker_sock);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&fs->listener, 128, on_connection);
	if (rc == 0) {
		uv_check_init(fs->loop, &fs->flush);
		fs->flush.data = fs;
		uv_check_start(&fs->flush, on_check);
		uv_unref((uv_handle_t *)&fs->flush);
	}
	if (rc < 0) {
		uv_close((uv_handle_t *)&fs->listener, NULL);
		return sk_error_set(err, SK_ERR_INTERNAL, "cannot listen on %s: %s", fs->worker_sock,
				    uv_strerror(rc));
	}
	return 0;
}

void worker_close_all(fn_server *fs)
{
	while (fs->workers)
		worker_close(fs->workers);
	if (!uv_is_closing((uv_handle_t *)&fs->listener))
		uv_close((uv_handle_t *)&fs->listener, NULL);
	if (uv_is_active((uv_handle_t *)&fs->flush) && !uv_is_closing((uv_handle_t *)&fs->flush))
		uv_close((uv_handle_t *)&fs->flush, NULL);
	unlink(fs->worker_sock);
}
