# vmove build.  `make` builds release binaries into build/release/bin.
# `make check` installs test dependencies, builds with ASan/UBSan into
# build/asan and runs unit + end-to-end tests.  `make demo` runs the main job.
#
# Sources: every src/<module>/*.c goes into libvmove.a, except the two
# program entry points (src/daemon/vmoved-main.c, src/cli/vmove-main.c).

CC      ?= cc
MODE    ?= release
BUILD   := build/$(MODE)
PKGS    := libevent libevent_openssl jansson sqlite3 openssl libsystemd
# The one version: debian/changelog's first entry.
VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CSTD    := -std=c17 -D_GNU_SOURCE
ifeq ($(MODE),asan)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
OPT     := -O2 -g
endif
# EXTRA_CFLAGS/EXTRA_LDFLAGS: a distribution's flags (debian/rules passes
# dpkg-buildflags' hardening flags).
CFLAGS  := $(CSTD) $(WARN) $(OPT) -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
LDFLAGS := $(OPT) $(EXTRA_LDFLAGS)

MAINS   := src/daemon/vmoved-main.c src/cli/vmove-main.c
LIBSRC  := $(filter-out $(MAINS),$(wildcard src/*/*.c))
LIBOBJ  := $(LIBSRC:%.c=$(BUILD)/%.o)
UNITSRC := $(wildcard tests/unit/test_*.c)
UNITBIN := $(UNITSRC:tests/unit/%.c=$(BUILD)/tests/%)
UNITLIB := $(BUILD)/tests/unit/fake_qmp.o    # test helpers linked into every unit test
BINS    := $(BUILD)/bin/vmoved $(BUILD)/bin/vmove $(BUILD)/bin/vmove-guest $(BUILD)/bin/vmove-probe

# Installation (make install PREFIX=/usr DESTDIR=...; debian/rules does).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/vmove
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
CONSOLEDIR ?= $(PREFIX)/share/vmove/console
MANPAGES := $(BUILD)/man/vmove.1 $(BUILD)/man/vmoved.8 $(BUILD)/man/vm.json.5

.PHONY: all deps test-deps pkg-deps check layers unit e2e demo guest clean bench man install deb soak soak-cluster soak-moves valgrind-check
all: $(BINS) man
man: $(MANPAGES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Only the entry points print the version: only they are rebuilt when it changes.
$(MAINS:%.c=$(BUILD)/%.o): CFLAGS += -DVMOVE_VERSION='"$(VERSION)"' -DVMOVE_CONSOLE_DIR='"$(CONSOLEDIR)"'
$(MAINS:%.c=$(BUILD)/%.o): debian/changelog

$(BUILD)/libvmove.a: $(LIBOBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/bin/vmoved: $(BUILD)/src/daemon/vmoved-main.o $(BUILD)/libvmove.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/vmove: $(BUILD)/src/cli/vmove-main.o $(BUILD)/libvmove.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The guest program runs as PID 1's child inside a busybox initramfs: it is
# linked statically and never built with sanitizers.
$(BUILD)/bin/vmove-guest: guest/vmove-guest.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -static -o $@ $<

# The client-side downtime probe: plain C, no sanitizers (it measures timing).
$(BUILD)/bin/vmove-probe: tools/vmove-probe.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(UNITLIB) $(BUILD)/libvmove.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(UNITLIB) $(BUILD)/libvmove.a $(LDLIBS) -lcmocka

# Manual pages (scdoc).  vmove(1)'s commands come from the CLI's own table
# (`vmove help --scdoc`), vm.json(5)'s body from docs/VM-JSON.md.
$(BUILD)/man/vmove.1: docs/man/vmove.1.scd.in $(BUILD)/bin/vmove
	@mkdir -p $(dir $@)
	$(BUILD)/bin/vmove help --scdoc >$@.cmds
	sed -e '/^@COMMANDS@$$/{r $@.cmds' -e 'd}' -e 's/@VERSION@/$(VERSION)/' $< | scdoc >$@
	rm -f $@.cmds

$(BUILD)/man/vm.json.5: docs/man/vm.json.5.scd.in docs/VM-JSON.md scripts/md2scd.py
	@mkdir -p $(dir $@)
	scripts/md2scd.py docs/VM-JSON.md >$@.body
	sed -e '/^@BODY@$$/{r $@.body' -e 'd}' -e 's/@VERSION@/$(VERSION)/' $< | scdoc >$@
	rm -f $@.body

$(BUILD)/man/vmoved.8: docs/man/vmoved.8.scd.in debian/changelog
	@mkdir -p $(dir $@)
	sed -e 's/@VERSION@/$(VERSION)/' $< | scdoc >$@

$(BUILD)/vmoved.service: dist/vmoved.service.in
	@mkdir -p $(dir $@)
	sed -e 's|@SBINDIR@|$(SBINDIR)|' $< >$@

install: $(BUILD)/bin/vmoved $(BUILD)/bin/vmove $(MANPAGES) $(BUILD)/vmoved.service
	install -D -m 0755 $(BUILD)/bin/vmoved $(DESTDIR)$(SBINDIR)/vmoved
	install -D -m 0755 $(BUILD)/bin/vmove $(DESTDIR)$(BINDIR)/vmove
	install -D -m 0644 $(BUILD)/man/vmove.1 $(DESTDIR)$(MANDIR)/man1/vmove.1
	install -D -m 0644 $(BUILD)/man/vmoved.8 $(DESTDIR)$(MANDIR)/man8/vmoved.8
	install -D -m 0644 $(BUILD)/man/vm.json.5 $(DESTDIR)$(MANDIR)/man5/vm.json.5
	install -D -m 0644 $(BUILD)/vmoved.service $(DESTDIR)$(SYSTEMDUNITDIR)/vmoved.service
	install -D -m 0644 dist/vmove.tmpfiles $(DESTDIR)$(TMPFILESDIR)/vmove.conf
	install -D -m 0644 dist/vmove.bash-completion $(DESTDIR)$(BASHCOMPDIR)/vmove
	install -D -m 0644 dist/vmoved.conf $(DESTDIR)$(SYSCONFDIR)/vmove/vmoved.conf
	install -d -m 0700 $(DESTDIR)/var/lib/vmove
	install -D -m 0644 docs/OPERATIONS.md $(DESTDIR)$(DOCDIR)/OPERATIONS.md
	install -d -m 0755 $(DESTDIR)$(CONSOLEDIR)
	install -m 0644 share/console/* $(DESTDIR)$(CONSOLEDIR)/

# The Debian package, built from a copy of the work tree (uncommitted
# changes included) so that dpkg-buildpackage's output lands in build/deb.
deb:
	rm -rf build/deb && mkdir -p build/deb/vmove-$(VERSION)
	tar -c --exclude=./build --exclude=./.git --exclude=./bench/results . | tar -x -C build/deb/vmove-$(VERSION)
	cd build/deb/vmove-$(VERSION) && dpkg-buildpackage -us -uc -b
	@ls -l build/deb/*.deb

pkg-deps:
	scripts/install-deps.sh pkg

deps:
	scripts/install-deps.sh runtime

test-deps:
	scripts/install-deps.sh test

guest: deps
	$(MAKE) MODE=release $(BUILD)/bin/vmove-guest
	VMOVE_GUEST_BIN=$(abspath build/release/bin/vmove-guest) guest/build-initrd.sh

# The layer order of src/ (docs/ARCHITECTURE.md), and the checker's own test.
layers:
	tests/unit/layers_selftest.sh
	scripts/check-layers.sh

unit: layers $(UNITBIN) $(BUILD)/bin/vmove-probe $(BUILD)/libvmove.a
	scripts/check-namesakes.sh $(BUILD)
	@set -e; for t in $(UNITBIN); do echo "== $$t"; $$t; done
	tests/unit/probe_selftest.sh $(BUILD)/bin/vmove-probe
	$(MAKE) MODE=release build/release/bin/vmove-guest
	build/release/bin/vmove-guest --self-test

e2e: all
	VMOVE_BIN=$(abspath $(BUILD)/bin) VMOVE_VMOVED=$(abspath $(BUILD)/bin/vmoved) \
	    VMOVE_VMOVE=$(abspath $(BUILD)/bin/vmove) tests/e2e/run.sh

check: test-deps
	$(MAKE) guest
	$(MAKE) MODE=asan unit
	$(MAKE) fuzz-ci
	$(MAKE) MODE=asan e2e
	$(MAKE) valgrind-check

# The daemons under Valgrind (tests/e2e/test_valgrind.py): a build without
# ASan, a live migration there and back, no error and no leak at exit.
valgrind-check: test-deps
	$(MAKE) MODE=release all
	$(MAKE) guest
	VMOVE_BIN=$(abspath build/release/bin) VMOVE_VMOVED=$(abspath build/release/bin/vmoved) \
	    VMOVE_VMOVE=$(abspath build/release/bin/vmove) VMOVE_E2E_MARK=valgrind VMOVE_E2E_JOBS=1 tests/e2e/run.sh

demo: deps
	$(MAKE) MODE=release all
	$(MAKE) guest
	VMOVE_BIN=$(abspath build/release/bin) scripts/demo.sh

# The slow end-to-end tests (marked slow: longer variants of what make check
# shows), then the cluster soak.
soak: test-deps
	$(MAKE) guest
	$(MAKE) MODE=asan all
	VMOVE_BIN=$(abspath build/asan/bin) VMOVE_VMOVED=$(abspath build/asan/bin/vmoved) \
	    VMOVE_VMOVE=$(abspath build/asan/bin/vmove) VMOVE_E2E_MARK=slow tests/e2e/run.sh
	$(MAKE) soak-cluster
	$(MAKE) soak-moves

# Random moves of every type with random faults (tests/e2e/soak_moves.py):
# VMOVE_SOAK_MINUTES (default 30), VMOVE_SOAK_SEED to replay a run; the
# summary goes to bench/results/soak-moves.json.
soak-moves: test-deps
	$(MAKE) guest
	$(MAKE) MODE=asan all
	VMOVE_BIN=$(abspath build/asan/bin) VMOVE_VMOVED=$(abspath build/asan/bin/vmoved) \
	    VMOVE_VMOVE=$(abspath build/asan/bin/vmove) /usr/bin/python3 -m pytest -p no:cacheprovider -v -s \
	    tests/e2e/soak_moves.py

# The cluster's faults in a loop (VMOVE_SOAK_ROUNDS, default 200): double
# runs, false fences and RTO percentiles in bench/results/soak-cluster.json.
soak-cluster: test-deps
	$(MAKE) guest
	$(MAKE) MODE=asan all
	VMOVE_BIN=$(abspath build/asan/bin) VMOVE_VMOVED=$(abspath build/asan/bin/vmoved) \
	    VMOVE_VMOVE=$(abspath build/asan/bin/vmove) /usr/bin/python3 -m pytest -p no:cacheprovider -v -s \
	    tests/e2e/soak_cluster.py

bench:
	scripts/install-deps.sh bench
	$(MAKE) MODE=release all
	$(MAKE) guest
	VMOVE_BIN=$(abspath build/release/bin) bench/run.sh

# Fuzzing (tests/fuzz/, docs/RELIABILITY.md): the library sources built with
# clang for libFuzzer, ASan and UBSan into build/fuzz/; each target runs
# FUZZ_SECONDS on its corpus, one job (the machine is shared).
FUZZ_SECONDS ?= 600
FUZZ_DIR     := build/fuzz
FUZZ_CFLAGS  := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -Isrc \
                -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/bin/%)

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_DIR)/libvmove.a: $(LIBSRC:%.c=$(FUZZ_DIR)/%.o)
	ar rcs $@ $^

$(FUZZ_DIR)/bin/%: $(FUZZ_DIR)/tests/fuzz/%.o $(FUZZ_DIR)/libvmove.a
	@mkdir -p $(dir $@)
	clang -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

.PHONY: fuzz fuzz-smoke fuzz-ci fuzz-build
fuzz-build:
	scripts/install-deps.sh fuzz
	$(MAKE) $(FUZZ_BINS)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_DIR)/bin $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=60

# In `make check`: the API dispatch target (the one every request goes
# through) for 60 s on its corpus (issue #11), every other target for 5 s on its own
# (its regression inputs included); the full runs are `make fuzz`.
fuzz-ci: fuzz-build
	tests/fuzz/run.sh $(FUZZ_DIR)/bin 60 fuzz_api
	tests/fuzz/run.sh $(FUZZ_DIR)/bin 5 $(filter-out fuzz_api,$(FUZZ_TARGETS))

clean:
	rm -rf build

.SECONDARY: $(UNITLIB) $(FUZZ_TARGETS:%=$(FUZZ_DIR)/tests/fuzz/%.o)
# A failed `... | scdoc >$@` must not leave a half-made page that looks current.
.DELETE_ON_ERROR:
-include $(wildcard $(FUZZ_DIR)/src/*/*.d $(FUZZ_DIR)/tests/fuzz/*.d)
-include $(LIBOBJ:.o=.d) $(UNITLIB:.o=.d) $(MAINS:%.c=$(BUILD)/%.d)
