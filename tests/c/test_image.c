/*
 * Tests for src/image: spec parsing and ids, the mirror parser, and builds
 * driven through a real event loop with a fake debootstrap (a shell script
 * named by SKIFF_DEBOOTSTRAP) that prints lines and makes a tiny tree, or
 * fails.  The real debootstrap (about 35 s, 260 MB from the mirror, root) is
 * left to the end-to-end tests.
 *
 * The store here is a stand-in for the three store_image_* calls image.c
 * makes, so that the tests can see and reset the rows (src/store/store.c was
 * not yet written); the archive's store.o is never pulled in because these
 * definitions satisfy every reference first.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "image/image-internal.h"
#include "util/buf.h"
#include "util/fsutil.h"
#include "util/sha256.h"
#include "util/xalloc.h"

/* ---- the store stand-in ------------------------------------------------- */

#define MAX_ROWS 8
static store_image rows[MAX_ROWS];
static size_t n_rows;
static int n_puts;

static void rows_reset(void)
{
	for (size_t i = 0; i < n_rows; i++)
		store_image_release(&rows[i]);
	n_rows = 0;
	n_puts = 0;
}

static store_image *row_find(const char *id)
{
	for (size_t i = 0; i < n_rows; i++)
		if (!strcmp(rows[i].image_id, id))
			return &rows[i];
	return NULL;
}

int store_image_put(sk_store *st, const store_image *im, sk_error *err)
{
	store_image *r = row_find(im->image_id);

	if (r)
		store_image_release(r);
	else
		r = &rows[n_rows++];
	assert_true(n_rows <= MAX_ROWS);
	r->image_id = xstrdup(im->image_id);
	r->spec_json = xstrdup(im->spec_json);
	r->base = xstrdup(im->base);
	r->python_version = im->python_version ? xstrdup(im->python_version) : NULL;
	r->size_bytes = im->size_bytes;
	r->created_at = im->created_at;
	n_puts++;
	return 0;
}

int store_image_get(sk_store *st, const char *image_id, store_image *out, sk_error *err)
{
	store_image *r = row_find(image_id);

	if (!r)
		return sk_error_set(err, SK_ERR_NOT_FOUND, "no image %s", image_id);
	out->image_id = xstrdup(r->image_id);
	out->spec_json = xstrdup(r->spec_json);
	out->base = xstrdup(r->base);
	out->python_version = r->python_version ? xstrdup(r->python_version) : NULL;
	out->size_bytes = r->size_bytes;
	out->created_at = r->created_at;
	return 0;
}

void store_image_release(store_image *im)
{
	free(im->image_id);
	free(im->spec_json);
	free(im->base);
	free(im->python_version);
	memset(im, 0, sizeof(*im));
}

/* ---- helpers ------------------------------------------------------------ */

static json_t *js(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);

	assert_non_null(j);
	return j;
}

static int parse(const char *text, image_spec *out, sk_error *err)
{
	json_t *j = js(text);
	int rc = image_spec_parse(j, out, err);

	json_decref(j);
	return rc;
}

static char *id_of(const char *text, const char *mirror)
{
	image_spec s;
	sk_error err;
	char *id;

	assert_int_equal(parse(text, &s, &err), 0);
	id = image_spec_id(&s, mirror);
	image_spec_release(&s);
	return id;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static int count_tmp(const char *images)
{
	DIR *d = opendir(images);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += !strncmp(de->d_name, ".tmp-", 5);
	closedir(d);
	return n;
}

static int count_lines(const char *path)
{
	_cleanup_free_ char *text = NULL;
	int n = 0;

	if (sk_read_file(path, &text, NULL, NULL) < 0)
		return 0;
	for (char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

/* ---- specs and ids ------------------------------------------------------ */

static void test_spec_normalises(void **state)
{
	image_spec s;
	sk_error err;
	char *a = id_of("{\"base\": \"debian_slim\", \"python_version\": null}", "http://m/debian");
	char *b = id_of("{\"base\": \"debian_slim\", \"python_version\": \"3.11\"}", "http://m/debian");
	char *c = id_of("{\"python_version\": \"3.11\", \"base\": \"debian_slim\"}", "http://m/debian");
	char *d = id_of("{\"base\": \"debian_slim\"}", "http://m/debian");
	char *other = id_of("{\"base\": \"debian_slim\"}", "http://other/debian");
	_cleanup_free_ char *json = NULL;
	char hex[65], *want;
	const char *pre = "{\"base\":\"debian_slim\",\"python_version\":\"3.11\"}\nhttp://m/debian\nbookworm";

	assert_int_equal(parse("{\"base\": \"debian_slim\"}", &s, &err), 0);
	assert_string_equal(s.base, "debian_slim");
	assert_string_equal(s.python_version, "3.11");
	json = image_spec_json(&s);
	assert_string_equal(json, "{\"base\":\"debian_slim\",\"python_version\":\"3.11\"}");
	image_spec_release(&s);

	assert_string_equal(a, b);
	assert_string_equal(a, c);
	assert_string_equal(a, d);
	assert_string_not_equal(a, other); /* a different mirror is a different image */
	assert_int_equal(strlen(a), 67);
	sha256_hex(pre, strlen(pre), hex);
	want = xasprintf("im-%s", hex);
	assert_string_equal(a, want);
	free(want);
	free(a), free(b), free(c), free(d), free(other);
}

static void expect_invalid(const char *text, const char *needle1, const char *needle2)
{
	image_spec s = { .base = (char *)"x", .python_version = (char *)"y", .n_apt_packages = 3 };
	sk_error err;

	assert_int_equal(parse(text, &s, &err), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);
	assert_null(s.base);
	assert_null(s.apt_packages);
	assert_int_equal(s.n_apt_packages, 0);
	if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
		fail_msg("for %s: unexpected message: %s", text, err.msg);
}

static void test_spec_errors(void **state)
{
	expect_invalid("{\"base\": \"debian_slim\", \"python_version\": \"2.7\"}", "\"2.7\"",
		       "3.11");
	expect_invalid("{\"base\": \"debian_slim\", \"python_version\": \"3.11.4\"}", "3.11.4",
		       "Debian bookworm ships Python 3.11 only");
	expect_invalid("{\"base\": \"debian_slim\", \"python_version\": 3.11}", "python_version",
		       "a number");
	expect_invalid("{\"base\": \"alpine\"}", "alpine", "debian_slim");
	expect_invalid("{\"base\": 3}", "a number", "debian_slim");
	expect_invalid("{}", "no base", "debian_slim");
	expect_invalid("{\"base\": \"debian_slim\", \"apt\": []}", "\"apt\"", "known");
	expect_invalid("[]", "JSON object", NULL);
	expect_invalid("null", "JSON object", NULL);
}

static void expect_bad_package(const char *name)
{
	_cleanup_free_ char *text =
		xasprintf("{\"base\": \"debian_slim\", \"apt_packages\": [\"jq\", \"%s\"]}", name);
	_cleanup_free_ char *quoted = xasprintf("\"%s\"", name);

	expect_invalid(text, quoted, "invalid Debian package name");
}

/*
 * Apt packages are part of the id, sorted and de-duplicated; no packages
 * (absent, null or []) is the id a plain debian_slim had before the field.
 */
static void test_spec_apt_packages(void **state)
{
	const char *m = "http://m/debian";
	char *plain = id_of("{\"base\": \"debian_slim\"}", m);
	char *empty = id_of("{\"base\": \"debian_slim\", \"apt_packages\": []}", m);
	char *null = id_of("{\"base\": \"debian_slim\", \"apt_packages\": null}", m);
	char *jq = id_of("{\"base\": \"debian_slim\", \"apt_packages\": [\"jq\"]}", m);
	char *two = id_of("{\"base\": \"debian_slim\", \"apt_packages\": [\"jq\", \"curl\"]}", m);
	char *two_again = id_of("{\"apt_packages\": [\"curl\", \"jq\", \"curl\"], "
				"\"base\": \"debian_slim\", \"python_version\": \"3.11\"}", m);
	const char *pre = "{\"apt_packages\":[\"curl\",\"jq\"],\"base\":\"debian_slim\","
			  "\"python_version\":\"3.11\"}\nhttp://m/debian\nbookworm";
	_cleanup_free_ char *json = NULL, *arg = NULL, *want = NULL;
	image_spec s, copy;
	sk_error err;
	char hex[65];

	assert_string_equal(plain, empty);
	assert_string_equal(plain, null);
	assert_string_not_equal(plain, jq);
	assert_string_not_equal(jq, two);
	assert_string_equal(two, two_again);
	sha256_hex(pre, strlen(pre), hex);
	want = xasprintf("im-%s", hex);
	assert_string_equal(two, want);

	assert_int_equal(parse("{\"base\": \"debian_slim\", \"apt_packages\": "
			       "[\"python3-flask\", \"g++\", \"libc6.1\", \"python3\", \"g++\"]}",
			       &s, &err), 0);
	assert_int_equal(s.n_apt_packages, 4);
	assert_string_equal(s.apt_packages[0], "g++");
	assert_string_equal(s.apt_packages[1], "libc6.1");
	assert_string_equal(s.apt_packages[2], "python3");
	assert_string_equal(s.apt_packages[3], "python3-flask");
	json = image_spec_json(&s);
	assert_string_equal(json, "{\"apt_packages\":[\"g++\",\"libc6.1\",\"python3\","
				  "\"python3-flask\"],\"base\":\"debian_slim\",\"python_version\":\"3.11\"}");
	arg = image_spec_include_arg(&s); /* python3 is always there, once */
	assert_string_equal(arg, "--include=python3,g++,libc6.1,python3-flask");
	image_spec_copy(&copy, &s);
	image_spec_release(&s);
	assert_int_equal(copy.n_apt_packages, 4);
	assert_string_equal(copy.apt_packages[3], "python3-flask");
	image_spec_release(&copy);
	assert_null(copy.apt_packages);

	assert_int_equal(parse("{\"base\": \"debian_slim\"}", &s, &err), 0);
	free(arg);
	arg = image_spec_include_arg(&s);
	assert_string_equal(arg, "--include=python3");
	image_spec_copy(&copy, &s);
	assert_null(copy.apt_packages);
	image_spec_release(&copy);
	image_spec_release(&s);

	expect_invalid("{\"base\": \"debian_slim\", \"apt_packages\": \"jq\"}", "a list",
		       "a string");
	expect_invalid("{\"base\": \"debian_slim\", \"apt_packages\": [\"jq\", 7]}",
		       "apt_packages[1]", "a number");
	expect_bad_package("Jq");
	expect_bad_package("j");
	expect_bad_package("");
	expect_bad_package("-jq");
	expect_bad_package("+jq");
	expect_bad_package("jq,curl");
	expect_bad_package("jq curl");
	expect_bad_package("jq;rm");
	expect_bad_package("python3_flask");
	expect_bad_package("../etc");
	{
		sk_buf b = SK_BUF_INIT;
		sk_buf_adds(&b, "{\"base\": \"debian_slim\", \"apt_packages\": [");
		for (int i = 0; i < 257; i++)
			sk_buf_addf(&b, "%s\"p%d\"", i ? "," : "", i);
		sk_buf_adds(&b, "]}");
		expect_invalid(b.base, "257 packages", "at most 256");
		sk_buf_release(&b);
	}
	free(plain), free(empty), free(null), free(jq), free(two), free(two_again);
}

/* ---- the mirror ---------------------------------------------------------- */

static void expect_mirror(const char *text, const char *want)
{
	char *m = image_parse_mirror(text);

	if (!want) {
		assert_null(m);
		return;
	}
	assert_non_null(m);
	assert_string_equal(m, want);
	free(m);
}

static void test_mirror_deb822(void **state)
{
	/* The security stanza comes first but is not the bookworm suite. */
	expect_mirror("Types: deb\n"
		      "# http://snapshot.debian.org/archive/debian-security/20250520T000000Z\n"
		      "URIs: http://deb.debian.org/debian-security\n"
		      "Suites: bookworm-security\n"
		      "Components: main\n"
		      "\n"
		      "Types: deb\n"
		      "URIs: http://deb.debian.org/debian/\n"
		      "Suites: bookworm bookworm-updates\n"
		      "Components: main\n"
		      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
		      "http://deb.debian.org/debian");
	/* Disabled stanzas, deb-src only, other URI schemes, continuation lines, CRLF. */
	expect_mirror("Types: deb-src\r\nURIs: http://src.example/debian\r\nSuites: bookworm\r\n\r\n"
		      "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n\n"
		      "types: deb deb-src\nuris: cdrom:/media/ \n https://mirror.example/debian\n"
		      "suites: trixie\n bookworm\n",
		      "https://mirror.example/debian");
	expect_mirror("Types: deb\nURIs: http://x/debian\nSuites: trixie\n", NULL);
	expect_mirror("", NULL);
}

static void test_mirror_one_line(void **state)
{
	expect_mirror("# comment\n"
		      "deb-src http://src.example/debian bookworm main\n"
		      "deb http://security.debian.org/debian-security bookworm-security main\n"
		      "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://ftp.de.debian.org/debian bookworm main contrib\n"
		      "deb http://later.example/debian bookworm main\n",
		      "http://ftp.de.debian.org/debian");
	expect_mirror("deb [ arch=amd64 ] https://m.example/debian// bookworm main\n",
		      "https://m.example/debian");
	expect_mirror("deb file:/srv/debian bookworm main\n", NULL);
}

/* ---- builds --------------------------------------------------------------- */

struct fixture {
	char *dir, *home, *images, *script, *runs;
	uv_loop_t loop;
	uv_timer_t guard; /* wakes the loop so a hung build fails the test */
	image_store *is;
	bool closed;
};

struct waiter {
	struct fixture *f;
	image_waiter *w;
	int progress_n, done_n;
	sk_buf lines;
	bool cached, failed;
	sk_error err;
	char id[80];
	bool cancel_on_line, close_on_line;
};

static void on_progress(void *ctx, const char *line)
{
	struct waiter *w = ctx;

	assert_int_equal(w->done_n, 0);
	w->progress_n++;
	sk_buf_addf(&w->lines, "%s\n", line);
	if (w->cancel_on_line)
		image_waiter_cancel(w->w);
	if (w->close_on_line && !w->f->closed)
		image_store_close(w->f->is, NULL, NULL), w->f->is = NULL;
}

static void on_done(void *ctx, const char *image_id, bool cached, const sk_error *err)
{
	struct waiter *w = ctx;

	w->done_n++;
	w->cached = cached;
	w->failed = err != NULL;
	if (err)
		w->err = *err;
	snprintf(w->id, sizeof(w->id), "%s", image_id);
}

static void on_guard(uv_timer_t *t) {}

static void write_script(struct fixture *f, const char *body)
{
	_cleanup_free_ char *text = xasprintf("#!/bin/sh\necho \"$*\" >> '%s'\n%s", f->runs, body);
	sk_error err;

	assert_int_equal(sk_write_file(f->script, text, strlen(text), 0755, &err), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/skiff-test-image-XXXXXX";
	sk_error err;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	f->home = xasprintf("%s/home", f->dir);
	f->images = xasprintf("%s/images", f->home);
	f->script = xasprintf("%s/fake-debootstrap", f->dir);
	f->runs = xasprintf("%s/runs", f->dir);
	setenv("SKIFF_DEBIAN_MIRROR", "http://mirror.test/debian/", 1);
	setenv("SKIFF_DEBOOTSTRAP", f->script, 1);
	/* A leftover of an interrupted build, to be removed at open. */
	assert_int_equal(sk_mkdir_p(f->images, 0755, &err), 0);
	_cleanup_free_ char *old = xasprintf("%s/.tmp-im-old-1234/rootfs/etc", f->images);
	assert_int_equal(sk_mkdir_p(old, 0755, &err), 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	uv_timer_init(&f->loop, &f->guard);
	uv_timer_start(&f->guard, on_guard, 100, 100);
	uv_unref((uv_handle_t *)&f->guard);
	assert_int_equal(image_store_open(&f->loop, f->home, (sk_store *)f, &f->is, &err), 0);
	assert_int_equal(count_tmp(f->images), 0);
	assert_string_equal(image_store_mirror(f->is), "http://mirror.test/debian");
	rows_reset();
	*state = f;
	return 0;
}

static void on_closed(void *data) { *(bool *)data = true; }

/* Runs the loop until *flag or until nothing is left to run; fails after 20 s. */
static void run_until(struct fixture *f, const bool *flag)
{
	unsigned long long until = sk_now_ns() + 20000000000ull;

	while (!*flag && sk_now_ns() < until)
		if (!uv_run(&f->loop, UV_RUN_ONCE) && !*flag)
			break;
	assert_true(*flag);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->is) {
		image_store_close(f->is, on_closed, &f->closed);
		run_until(f, &f->closed);
	}
	uv_close((uv_handle_t *)&f->guard, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left open */
	sk_rm_rf(f->dir, NULL);
	rows_reset();
	free(f->dir), free(f->home), free(f->images), free(f->script), free(f->runs);
	free(f);
	return 0;
}

static image_spec default_spec(void)
{
	image_spec s;
	sk_error err;

	assert_int_equal(parse("{\"base\": \"debian_slim\"}", &s, &err), 0);
	return s;
}

static const char ok_body[] =
	"echo 'I: Retrieving InRelease'\n"
	"echo 'W: a line on stderr' >&2\n"
	"sleep 0.3\n"
	"mkdir -p \"$4/usr/bin\" \"$4/var/cache/apt/archives/partial\" \"$4/var/lib/apt/lists/partial\"\n"
	"echo x > \"$4/var/cache/apt/archives/python3_3.11_amd64.deb\"\n"
	"echo x > \"$4/var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease\"\n"
	"printf '#!/bin/sh\\n' > \"$4/usr/bin/python3\"\n"
	"head -c 100000 /dev/zero > \"$4/big\"\n"
	"printf 'I: Base system installed successfully.'\n"; /* no final newline */

static void test_build_joins_and_caches(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f }, b = { .f = f }, c = { .f = f }, d = { .f = f };
	struct waiter e = { .f = f, .cancel_on_line = true }, g = { .f = f };
	_cleanup_free_ char *id = image_spec_id(&spec, "http://mirror.test/debian");
	_cleanup_free_ char *dir = xasprintf("%s/%s", f->images, id);
	_cleanup_free_ char *rootfs = NULL, *runs = NULL, *spec_json = NULL, *path = NULL;
	sk_error err;
	store_image *row;

	write_script(f, ok_body);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &b, &b.w, &err), 0);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &c, &c.w, &err), 0);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &e, &e.w, &err), 0);
	assert_non_null(a.w);
	assert_non_null(b.w);
	assert_int_equal(count_tmp(f->images), 1);
	image_waiter_cancel(c.w); /* c hears nothing more; the build goes on */
	assert_null(image_rootfs(f->is, id));
	while (!a.done_n && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_int_equal(a.done_n, 1);
	assert_int_equal(b.done_n, 1);
	assert_false(a.failed);
	assert_false(a.cached);
	assert_string_equal(a.id, id);
	assert_int_equal(c.progress_n + c.done_n, 0);
	assert_int_equal(e.progress_n, 1); /* cancelled in its first progress call */
	assert_int_equal(e.done_n, 0);
	/* Both streams and the unterminated last line reach every waiter, in order. */
	assert_string_equal(a.lines.base, "I: Retrieving InRelease\nW: a line on stderr\n"
					  "I: Base system installed successfully.\n");
	assert_string_equal(b.lines.base, a.lines.base);
	assert_int_equal(count_lines(f->runs), 1);
	assert_int_equal(sk_read_file(f->runs, &runs, NULL, &err), 0);
	rootfs = xasprintf("%s/.tmp-%s-", f->images, id);
	assert_non_null(strstr(runs, "--variant=minbase --include=python3 bookworm "));
	assert_non_null(strstr(runs, rootfs));
	assert_non_null(strstr(runs, "/rootfs http://mirror.test/debian\n"));
	free(rootfs);

	/* The tree is in place, trimmed, with its spec, and recorded. */
	assert_int_equal(count_tmp(f->images), 0);
	rootfs = image_rootfs(f->is, id);
	assert_non_null(rootfs);
	path = xasprintf("%s/usr/bin/python3", rootfs);
	assert_true(exists(path));
	free(path);
	path = xasprintf("%s/var/cache/apt/archives/python3_3.11_amd64.deb", rootfs);
	assert_false(exists(path));
	free(path);
	path = xasprintf("%s/var/cache/apt/archives/partial", rootfs);
	assert_true(exists(path)); /* only the .deb files go */
	free(path);
	path = xasprintf("%s/var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", rootfs);
	assert_false(exists(path));
	free(path);
	path = xasprintf("%s/spec.json", dir);
	assert_int_equal(sk_read_file(path, &spec_json, NULL, &err), 0);
	assert_string_equal(spec_json, "{\"base\":\"debian_slim\",\"python_version\":\"3.11\"}");
	assert_int_equal(n_puts, 1);
	row = row_find(id);
	assert_non_null(row);
	assert_string_equal(row->spec_json, spec_json);
	assert_string_equal(row->base, "debian_slim");
	assert_string_equal(row->python_version, "3.11");
	assert_true(row->size_bytes >= 100000);
	assert_true(row->created_at > 1.6e9);

	/* Built: the answer comes before image_ensure returns, with no build. */
	d.w = (image_waiter *)&d;
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &d, &d.w, &err), 0);
	assert_null(d.w);
	assert_int_equal(d.done_n, 1);
	assert_true(d.cached);
	assert_false(d.failed);
	assert_int_equal(d.progress_n, 0);
	assert_string_equal(d.id, id);
	assert_int_equal(n_puts, 1);

	/* The database lost its row (a reset): the next request puts it back. */
	rows_reset();
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &g, &g.w, &err), 0);
	assert_true(g.cached);
	assert_int_equal(n_puts, 1);
	assert_non_null(row_find(id));
	assert_true(row_find(id)->size_bytes >= 100000);
	assert_int_equal(count_lines(f->runs), 1);

	sk_buf_release(&a.lines), sk_buf_release(&b.lines), sk_buf_release(&e.lines);
	image_spec_release(&spec);
}

static void test_build_failure(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f }, b = { .f = f };
	_cleanup_free_ char *id = image_spec_id(&spec, "http://mirror.test/debian");
	_cleanup_free_ char *dir = xasprintf("%s/%s", f->images, id);
	const char *head = "image build failed: debootstrap exited with status 1; last output:\n";
	sk_error err;

	/* 40 lines of 25 characters: more than the message holds, so it keeps the end. */
	write_script(f, "mkdir -p \"$4/usr/bin\"\n"
			"for i in $(seq -w 1 40); do echo \"E: something broke, $i\"; done\n"
			"printf 'bad byte \\001 \\377\\n'\n"
			"exit 1\n");
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	while (!a.done_n && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_int_equal(a.done_n, 1);
	assert_true(a.failed);
	assert_false(a.cached);
	assert_int_equal(a.err.kind, SK_ERR_INTERNAL);
	assert_int_equal(a.progress_n, 41);
	assert_non_null(strstr(a.lines.base, "bad byte ? ?\n")); /* text safe for JSON */
	assert_memory_equal(a.err.msg, head, strlen(head));
	assert_non_null(strstr(a.err.msg, "E: something broke, 40\nbad byte ? ?"));
	assert_non_null(strstr(a.err.msg, "E: something broke, 30\n"));
	assert_null(strstr(a.err.msg, "E: something broke, 01"));
	assert_true(strlen(a.err.msg) < sizeof(a.err.msg));
	/* Nothing is left behind and nothing recorded. */
	assert_int_equal(count_tmp(f->images), 0);
	assert_false(exists(dir));
	assert_null(image_rootfs(f->is, id));
	assert_int_equal(n_puts, 0);

	/* A failure is not remembered: the next request builds again. */
	write_script(f, "echo 'killed by a signal'\nkill -9 $$\n");
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &b, &b.w, &err), 0);
	while (!b.done_n && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_true(b.failed);
	assert_non_null(strstr(b.err.msg, "killed by signal 9"));
	assert_non_null(strstr(b.err.msg, "\nkilled by a signal"));
	assert_int_equal(count_lines(f->runs), 2);
	assert_int_equal(count_tmp(f->images), 0);

	sk_buf_release(&a.lines), sk_buf_release(&b.lines);
	image_spec_release(&spec);
}

static void test_success_without_python(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f };
	sk_error err;

	write_script(f, "mkdir -p \"$4/usr/bin\"\necho done\n");
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	while (!a.done_n && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_true(a.failed);
	assert_non_null(strstr(a.err.msg, "no usr/bin/python3"));
	assert_non_null(strstr(a.err.msg, "last output:\ndone"));
	assert_int_equal(count_tmp(f->images), 0);
	image_spec_release(&spec);
	sk_buf_release(&a.lines);
}

/* The packages reach debootstrap's --include; the spec file and row name them. */
static void test_build_with_apt_packages(void **state)
{
	struct fixture *f = *state;
	image_spec spec;
	struct waiter a = { .f = f };
	_cleanup_free_ char *id = NULL, *plain = NULL, *runs = NULL, *path = NULL, *text = NULL;
	image_spec dflt = default_spec();
	sk_error err;

	assert_int_equal(parse("{\"base\": \"debian_slim\", \"apt_packages\": [\"jq\", \"curl\"]}",
			       &spec, &err), 0);
	id = image_spec_id(&spec, "http://mirror.test/debian");
	plain = image_spec_id(&dflt, "http://mirror.test/debian");
	write_script(f, ok_body);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	while (!a.done_n && uv_run(&f->loop, UV_RUN_ONCE))
		;
	if (a.failed)
		fail_msg("%s", a.err.msg);
	assert_string_equal(a.id, id);
	assert_int_equal(sk_read_file(f->runs, &runs, NULL, &err), 0);
	assert_non_null(strstr(runs, "--variant=minbase --include=python3,curl,jq bookworm "));
	path = xasprintf("%s/%s/spec.json", f->images, id);
	assert_int_equal(sk_read_file(path, &text, NULL, &err), 0);
	assert_string_equal(text, "{\"apt_packages\":[\"curl\",\"jq\"],\"base\":\"debian_slim\","
				  "\"python_version\":\"3.11\"}");
	assert_string_equal(row_find(id)->spec_json, text);
	assert_null(image_rootfs(f->is, plain)); /* the plain image is another one */
	image_spec_release(&spec);
	image_spec_release(&dflt);
	sk_buf_release(&a.lines);
}

static void test_missing_builder(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f };
	sk_error err;

	setenv("SKIFF_DEBOOTSTRAP", "/nonexistent/debootstrap", 1);
	a.w = (image_waiter *)&a;
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), -1);
	assert_null(a.w);
	assert_int_equal(err.kind, SK_ERR_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "apt-get install debootstrap"));
	assert_int_equal(a.progress_n + a.done_n, 0);
	assert_int_equal(count_tmp(f->images), 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(a.progress_n + a.done_n, 0);
	image_spec_release(&spec);
}

/*
 * Closing kills the build's whole process group (the script's sleep is its
 * child) and removes the tree, even with a file system mounted inside it as
 * a killed debootstrap leaves proc.  The mount needs root; main() gives the
 * whole process a private mount namespace where it can (before libuv starts
 * its thread pool, whose threads would otherwise keep the old namespace), and
 * the rest of the test runs without it.
 */
static void test_close_kills_build(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f }, b = { .f = f };
	unsigned long long t0;
	sk_error err;

	write_script(f, "mkdir -p \"$4/proc\"\n"
			"mount -t tmpfs skiff-test \"$4/proc\" 2>/dev/null && touch \"$4/proc/x\" && echo mounted\n"
			"echo started\n"
			"sleep 30\n"
			"echo 'not killed'\n");
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &b, &b.w, &err), 0);
	while ((!a.lines.base || !strstr(a.lines.base, "started")) && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_non_null(strstr(a.lines.base, "started"));
	t0 = sk_now_ns();
	image_store_close(f->is, on_closed, &f->closed);
	f->is = NULL;
	/* The waiters hear it at once. */
	assert_int_equal(a.done_n, 1);
	assert_int_equal(b.done_n, 1);
	assert_true(a.failed);
	assert_int_equal(a.err.kind, SK_ERR_UNAVAILABLE);
	assert_string_equal(a.err.msg, "server is shutting down");
	assert_false(f->closed); /* not before the child is reaped */
	run_until(f, &f->closed);
	assert_true(sk_now_ns() - t0 < 10000000000ull);
	assert_int_equal(count_tmp(f->images), 0);
	assert_int_equal(a.done_n, 1);
	assert_null(strstr(a.lines.base, "not killed"));
	if (!strstr(a.lines.base, "mounted"))
		print_message("(no mount inside the build: unmounting not exercised)\n");
	image_spec_release(&spec);
	sk_buf_release(&a.lines), sk_buf_release(&b.lines);
}

/* A callback may close the store; the build still winds down cleanly. */
static void test_close_from_callback(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f, .close_on_line = true }, b = { .f = f };
	sk_error err;

	write_script(f, "echo one\nsleep 30\n");
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &b, &b.w, &err), 0);
	while (f->is && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_null(f->is);
	assert_int_equal(a.progress_n, 1);
	assert_int_equal(a.done_n, 1);
	assert_int_equal(b.done_n, 1);
	assert_int_equal(b.progress_n, 0); /* told of the close before the line reached it */
	assert_int_equal(b.err.kind, SK_ERR_UNAVAILABLE);
	/* The close has no done callback here; the loop just runs dry. */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(count_tmp(f->images), 0);
	image_spec_release(&spec);
	sk_buf_release(&a.lines), sk_buf_release(&b.lines);
}

/*
 * The real thing, opt-in (SKIFF_TEST_DEBOOTSTRAP=1): root, the network to
 * the machine's mirror, about 35 s and 260 MB.
 */
static void test_real_debootstrap(void **state)
{
	struct fixture *f = *state;
	image_spec spec = default_spec();
	struct waiter a = { .f = f };
	_cleanup_free_ char *rootfs = NULL, *python = NULL, *lists = NULL;
	const char *want = getenv("SKIFF_TEST_DEBOOTSTRAP");
	sk_error err;

	if (!want || strcmp(want, "1") || geteuid() != 0) {
		image_spec_release(&spec);
		skip();
	}
	/* A fresh store with the machine's own mirror and debootstrap. */
	image_store_close(f->is, on_closed, &f->closed);
	run_until(f, &f->closed);
	f->closed = false;
	unsetenv("SKIFF_DEBIAN_MIRROR");
	unsetenv("SKIFF_DEBOOTSTRAP");
	assert_int_equal(image_store_open(&f->loop, f->home, (sk_store *)f, &f->is, &err), 0);
	assert_int_equal(image_ensure(f->is, &spec, on_progress, on_done, &a, &a.w, &err), 0);
	while (!a.done_n && uv_run(&f->loop, UV_RUN_ONCE))
		;
	if (a.failed)
		fail_msg("%s", a.err.msg);
	print_message("%d lines of output; mirror %s\n", a.progress_n, image_store_mirror(f->is));
	rootfs = image_rootfs(f->is, a.id);
	assert_non_null(rootfs);
	python = xasprintf("%s/usr/bin/python3", rootfs);
	assert_true(exists(python));
	lists = xasprintf("%s/var/lib/apt/lists", rootfs);
	assert_true(exists(lists));
	print_message("size %lld bytes\n", row_find(a.id)->size_bytes);
	assert_true(row_find(a.id)->size_bytes > 100 << 20);
	image_spec_release(&spec);
	sk_buf_release(&a.lines);
}

int main(void)
{
	if (geteuid() == 0 && unshare(CLONE_NEWNS) == 0 &&
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_normalises),
		cmocka_unit_test(test_spec_errors),
		cmocka_unit_test(test_spec_apt_packages),
		cmocka_unit_test(test_mirror_deb822),
		cmocka_unit_test(test_mirror_one_line),
		cmocka_unit_test_setup_teardown(test_build_joins_and_caches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_success_without_python, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_with_apt_packages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_builder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_kills_build, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_real_debootstrap, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
