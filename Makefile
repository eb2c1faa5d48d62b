# FaaS in C. `make` builds bin/faas-api and bin/faas-worker; `make run` starts the whole
# system on the embedded defaults; `make test` runs every test.
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc
PKGS    := lua5.4 libnats libmongoc-1.0 libbson-1.0 libcjson libjwt libsodium sqlite3
DEPS_DEB := build-essential dpkg-dev pkg-config liblua5.4-dev lua5.4 libnats-dev \
            libmongoc-dev libcjson-dev libjwt-dev libsodium-dev libsqlite3-dev nats-server \
            busybox-static python3-pytest python3-requests curl wrk nginx-light cppcheck \
            docker-compose debootstrap
# libcurl and libmicrohttpd are built from Debian's sources without TLS and linked statically
# (scripts/static-deps.sh says why): the worker idles in 8 MB instead of 12.
STATIC      := .deps/static
STATIC_LIBS := $(STATIC)/lib/libmicrohttpd.a $(STATIC)/lib/libcurl.a
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  ?= -O2 -g
override CFLAGS += $(SAN)
override CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
           -Icore -Iworker -I$(STATIC)/include $(PKG_CFLAGS)
LDLIBS  += $(STATIC_LIBS) $(PKG_LIBS) -lpthread -lm
# each binary maps only the libraries it calls (the worker needs no SQLite or MongoDB)
LDFLAGS += -Wl,--as-needed
BIN     ?= bin

CORE_SRC   := $(filter-out core/main_api.c,$(wildcard core/*.c))
WORKER_SRC := $(filter-out worker/main_worker.c,$(wildcard worker/*.c))
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
WORKER_OBJ := $(WORKER_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC   := $(wildcard spec/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:spec/unit/%.c=$(BUILD)/spec/%)
PYTEST     := /usr/bin/python3 -m pytest

.PHONY: all deps run test unit e2e asan asan-test compose-test install clean bench check-deps lint
all: $(BIN)/faas-api $(BIN)/faas-worker

$(BUILD)/%.o: %.c $(wildcard core/*.h worker/*.h) | $(STATIC_LIBS)
	@mkdir -p $(dir $@)
	@echo '  CC  $<'; $(CC) $(CFLAGS) -c $< -o $@

$(STATIC_LIBS) &: scripts/static-deps.sh
	@./scripts/static-deps.sh $(STATIC) && touch $(STATIC_LIBS)

# the OpenAPI document, linked in as bytes (symbols _binary_core_openapi_json_start/_end)
$(BUILD)/core/openapi_json.o: core/openapi.json
	@mkdir -p $(dir $@)
	@echo '  LD  $@'; ld -r -b binary -z noexecstack -o $@ $<

$(BUILD)/libfaascore.a: $(CORE_OBJ) $(BUILD)/core/openapi_json.o
	@mkdir -p $(dir $@); rm -f $@; if [ -n "$^" ]; then ar rcs $@ $^; else printf '!<arch>\n' > $@; fi
$(BUILD)/libfaasworker.a: $(WORKER_OBJ)
	@mkdir -p $(dir $@); rm -f $@; if [ -n "$^" ]; then ar rcs $@ $^; else printf '!<arch>\n' > $@; fi

$(BIN)/faas-api: $(BUILD)/core/main_api.o $(BUILD)/libfaascore.a
	@mkdir -p $(BIN)
	@echo '  LD  $@'; $(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/faas-worker: $(BUILD)/worker/main_worker.o $(BUILD)/libfaasworker.a $(BUILD)/libfaascore.a
	@mkdir -p $(BIN)
	@echo '  LD  $@'; $(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/spec/%: spec/unit/%.c spec/unit/t.h $(BUILD)/libfaasworker.a $(BUILD)/libfaascore.a
	@mkdir -p $(dir $@)
	@echo '  LD  $@'; $(CC) $(CFLAGS) -Ispec/unit $(LDFLAGS) -o $@ $< $(BUILD)/libfaasworker.a $(BUILD)/libfaascore.a $(LDLIBS)

# Installs the Debian packages the build and the tests need (root), or says how.
deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEPS_DEB); \
	else echo "run as root: apt-get install -y $(DEPS_DEB)"; exit 1; fi

check-deps:
	@pkg-config --exists $(PKGS) || $(MAKE) deps

run: check-deps all
	@./scripts/run.sh

unit: $(UNIT_BIN)
	@./scripts/unit.sh $(UNIT_BIN)

e2e: all
	@$(PYTEST) -q spec/e2e

test: all $(UNIT_BIN)
	@./scripts/test.sh $(UNIT_BIN)

asan:
	$(MAKE) BUILD=build-asan BIN=bin-asan CFLAGS="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" all

# the end-to-end suite against the sanitizer build: any ASan/UBSan/LSan report fails it
asan-test: asan
	@FAAS_BIN=bin-asan $(PYTEST) -q -p no:cacheprovider spec/e2e

# brings the compose stack up for real (2 APIs, 3 workers, nginx, NATS, FerretDB as MongoDB)
compose-test: all
	@$(PYTEST) -q -p no:cacheprovider spec/compose

bench: all
	@for b in bench/*.sh; do echo "== $$b"; bash $$b || exit 1; done

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability -Icore -Iworker core worker

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/faas/lua $(DESTDIR)$(PREFIX)/share/faas/plugins
	install -m 755 bin/faas-api bin/faas-worker $(DESTDIR)$(PREFIX)/bin/
	install -m 644 lua/*.lua $(DESTDIR)$(PREFIX)/share/faas/lua/
	install -m 644 plugins/*.lua $(DESTDIR)$(PREFIX)/share/faas/plugins/
	install -m 644 config.lua $(DESTDIR)$(PREFIX)/share/faas/config.lua

clean:
	rm -rf build build-asan bin bin-asan
