# Skiff build.  `make` builds build/skiff; `make test` runs every test;
# `make install` puts skiff on PATH and the SDK where python3 finds it.
PREFIX ?= /usr/local
CC ?= cc
PKGS := libuv jansson sqlite3 http-parser
PKG_CFLAGS := $(shell pkg-config --cflags libuv jansson sqlite3 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs libuv jansson sqlite3 2>/dev/null) -lhttp_parser -lutil
CFLAGS ?= -O2 -g
SK_CFLAGS := -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -Isrc $(PKG_CFLAGS)
LDFLAGS ?=
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer

BUILD ?= build
LIB_SRC := $(sort $(filter-out src/cli/main.c,$(wildcard src/*/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/c/test_*.c))
TEST_BIN := $(TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
PYTHON ?= /usr/bin/python3

.PHONY: all test test-c test-e2e test-asan install uninstall clean deps

all: $(BUILD)/skiff

$(BUILD)/%.o: %.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SK_CFLAGS) -c -o $@ $<

$(BUILD)/libskiff.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/skiff: $(BUILD)/src/cli/main.o $(BUILD)/libskiff.a
	$(CC) $(CFLAGS) $(SK_CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libskiff.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SK_CFLAGS) $(LDFLAGS) -Itests/c -o $@ $< $(BUILD)/libskiff.a $(PKG_LIBS) -lcmocka

test-c: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done

# C unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g $(SANFLAGS)" LDFLAGS="$(SANFLAGS)" test-c

test-e2e: $(BUILD)/skiff
	SKIFF_BIN=$(abspath $(BUILD)/skiff) PYTHONPATH=$(abspath sdk/python) \
		$(PYTHON) -m pytest -v -ra tests/e2e $(PYTEST_ARGS)

test: all test-c test-asan test-e2e

deps:
	bash scripts/install-deps.sh

install: $(BUILD)/skiff
	install -D -m 0755 $(BUILD)/skiff $(DESTDIR)$(PREFIX)/bin/skiff
	rm -rf $(DESTDIR)$(PREFIX)/lib/skiff/python
	mkdir -p $(DESTDIR)$(PREFIX)/lib/skiff/python
	cp -r sdk/python/skiff $(DESTDIR)$(PREFIX)/lib/skiff/python/
	find $(DESTDIR)$(PREFIX)/lib/skiff/python -name __pycache__ -prune -exec rm -rf {} +
	bash scripts/install-pth.sh $(PREFIX)/lib/skiff/python

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/bin/skiff $(DESTDIR)$(PREFIX)/lib/skiff
	bash scripts/install-pth.sh --remove

clean:
	rm -rf build build-asan
