# Skiff build.  `make` builds build/skiff; `make test` runs every test;
# `make install` puts skiff on PATH and the SDK where python3 finds it.
PREFIX ?= /usr/local
CC ?= cc
PKGS := libuv jansson sqlite3 http-parser
PKG_CFLAGS := $(shell pkg-config --cflags libuv jansson sqlite3 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs libuv jansson sqlite3 2>/dev/null) -lhttp_parser -lwslay -lutil -lm
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

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang against the library
# sources compiled again for fuzzing (coverage, ASan, UBSan) in build-fuzz/.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_BUILD := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -O1 -g $(FUZZ_SAN) $(SK_CFLAGS)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

.PHONY: all test test-c test-py test-e2e test-asan fuzz fuzz-smoke install uninstall clean deps

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

$(FUZZ_BUILD)/%.o: %.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/libskiff.a: $(FUZZ_LIB_OBJ)
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libskiff.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libskiff.a $(PKG_LIBS)

# Runs every fuzz target for FUZZ_SECONDS from its seeds (tests/fuzz/corpus/<target>)
# plus what earlier runs found (build-fuzz/corpus/<target>); fails on any crash,
# leak, sanitizer report or input slower than 10 s.  The input that failed is
# kept as build-fuzz/artifacts/<target>-crash-* (rerun: build-fuzz/<target> FILE).
fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do \
		t=$${f##*/}; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/logs; \
		echo "== $$t ($(FUZZ_SECONDS) s)"; \
		if ! $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- $(FUZZ_ARGS) \
			$(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t \
			>$(FUZZ_BUILD)/logs/$$t.log 2>&1; then \
			tail -n 80 $(FUZZ_BUILD)/logs/$$t.log; \
			echo "$$t FAILED (log: $(FUZZ_BUILD)/logs/$$t.log)"; exit 1; \
		fi; \
		grep -E '^Done [0-9]+ runs' $(FUZZ_BUILD)/logs/$$t.log || true; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=5

# Python SDK tests that need no server: the container runtime against a stand-in
# socket, the client against tests/python/fakeserver.py (and build/skiff run).
test-py: $(BUILD)/skiff
	PYTHONPATH=$(abspath sdk/python) $(PYTHON) -m pytest -q tests/python $(PYTEST_ARGS)

test-e2e: $(BUILD)/skiff
	SKIFF_BIN=$(abspath $(BUILD)/skiff) PYTHONPATH=$(abspath sdk/python) \
		$(PYTHON) -m pytest -v -ra tests/e2e $(PYTEST_ARGS)

test: all test-c test-asan fuzz-smoke test-py test-e2e

deps:
	bash scripts/install-deps.sh

install: $(BUILD)/skiff
	install -D -m 0755 $(BUILD)/skiff $(DESTDIR)$(PREFIX)/bin/skiff
	rm -rf $(DESTDIR)$(PREFIX)/lib/skiff/python
	mkdir -p $(DESTDIR)$(PREFIX)/lib/skiff/python
	cp -r sdk/python/skiff $(DESTDIR)$(PREFIX)/lib/skiff/python/
	find $(DESTDIR)$(PREFIX)/lib/skiff/python -name __pycache__ -prune -exec rm -rf {} +
	# Bytecode, so that containers load the SDK instead of compiling it at each start.
	$(PYTHON) -m compileall -q $(DESTDIR)$(PREFIX)/lib/skiff/python
	bash scripts/install-pth.sh $(PREFIX)/lib/skiff/python

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/bin/skiff $(DESTDIR)$(PREFIX)/lib/skiff
	bash scripts/install-pth.sh --remove

clean:
	rm -rf build build-asan $(FUZZ_BUILD)
