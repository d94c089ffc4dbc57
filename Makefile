# iterfs: `make run` mounts at $(MOUNTPOINT), `make test` runs the test suite.
# Both set everything up first; set-up is idempotent and quick once done.
# `make unit` runs the unit tier alone, anywhere: no root, kernel or mount.

SHELL := /bin/bash
.DEFAULT_GOAL := help

MOUNTPOINT ?= /iterfs
PYTHON ?= python3
VENV := .venv
# The unit tier's own environment: packages from the registry only, none of the
# system's (no libfuse3 to build pyfuse3 against: what needs it is skipped).
UNIT_VENV := .venv-unit
UNIT_PACKAGES := "trio>=0.23" "cffi>=1.15" "pytest>=7"
BUILD := build
BTF := /sys/kernel/btf/vmlinux

# clang, bpftool and libbpf build the programs; gcc, pkg-config, libfuse3 and the
# Python headers build pyfuse3; fuse3 brings fusermount3; the tests run netstat
# (net-tools), unshare, nsenter, setpriv (util-linux), systemd-analyze (systemd),
# and node_exporter and Prometheus (whose promtool checks the metrics' format).
DEBIAN_PACKAGES := clang bpftool libbpf-dev libbpf1 libfuse3-dev fuse3 pkg-config \
	gcc make python3 python3-dev python3-venv ca-certificates net-tools util-linux \
	systemd prometheus prometheus-node-exporter

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' \
	-e 's/ppc64le/powerpc/' -e 's/s390x/s390/' -e 's/riscv64/riscv/')
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	-I$(BUILD) -Iprogs

PROGRAMS := $(patsubst progs/%.bpf.c,$(BUILD)/progs/%.bpf.o,$(wildcard progs/*.bpf.c))
TEST_PROGRAMS := $(patsubst tests/progs/%.bpf.c,$(BUILD)/tests/%.bpf.o,\
	$(wildcard tests/progs/*.bpf.c))
# Metrics: progs/metrics/<name>.bpf.c is the view metrics/<name>.prom, beside the views.
METRICS := $(patsubst progs/metrics/%.bpf.c,$(BUILD)/progs/%.prom.bpf.o,\
	$(wildcard progs/metrics/*.bpf.c))
# Programs the daemon runs itself, not views: beside the views' directory.
INTERNAL_PROGRAMS := $(patsubst progs/internal/%.bpf.c,$(BUILD)/internal/%.bpf.o,\
	$(wildcard progs/internal/*.bpf.c))

# make install: under $(DESTDIR)$(PREFIX), a virtual environment with iterfs in
# lib/iterfs/venv, the compiled views in lib/iterfs/progs, the programs the
# daemon runs itself in lib/iterfs/internal, the headers views of
# one's own may include in lib/iterfs/include, the command sbin/iterfs and the
# systemd unit lib/systemd/system/iterfs.service.
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR := $(PREFIX)/lib/iterfs
UNITDIR := $(PREFIX)/lib/systemd/system

# make test-service: a Debian 12 root booted with systemd-nspawn, with iterfs
# installed into it, to drive the unit with systemctl (tests/service). The
# root is built once with debootstrap and kept in $(SERVICE_ROOT); it is built
# again when missing, or when $(SERVICE_ROOT_PACKAGES) changed.
SERVICE_HOST_PACKAGES := debootstrap systemd-container
SERVICE_ROOT := $(BUILD)/service/bookworm
# systemd as PID 1 and journald, dbus for systemctl, fusermount3 and libfuse3
# for pyfuse3, and what the installed venv runs on: Debian's python3 and libbpf.so.1.
SERVICE_ROOT_PACKAGES := systemd,systemd-sysv,dbus,fuse3,python3,libbpf1
DEBIAN_MIRROR ?= http://deb.debian.org/debian

.PHONY: help setup system venv programs run test unit test-kernels test-service \
	service-system bench install clean FORCE

help:
	@echo "make run    set up, then mount iterfs at $(MOUNTPOINT) in the foreground"
	@echo "make test   set up, then run the test suite: the unit tier, then the rest"
	@echo "make unit   the unit tier alone, on any machine, as any user (tests/unit)"
	@echo "make test-kernels  the kernel-dependent tests on this kernel and, in QEMU,"
	@echo "            on Debian 12's 6.1 and 6.12 cloud kernels (see README, Kernels)"
	@echo "make test-service  the installed unit under systemd, in a Debian 12 root"
	@echo "            booted with systemd-nspawn (see README, As a systemd service)"
	@echo "make bench  set up, then run the benchmarks in bench/"
	@echo "make setup  install packages, create $(VENV), build the BPF programs"
	@echo "make install  install iterfs and its systemd unit under PREFIX=$(PREFIX)"
	@echo "make clean  remove $(BUILD) and $(VENV)"

setup: system venv programs

# Debian packages that are missing, and bpffs where it is not mounted.
system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# The interpreter named by PYTHON when it can make a venv with headers to build
# pyfuse3 against, else Debian's.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@python=$(PYTHON); \
	if ! $$python -c 'import ensurepip, sysconfig, os, sys; \
		sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
		2>/dev/null; then python=/usr/bin/python3; fi; \
	[ -x $(VENV)/bin/python ] || $$python -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

programs: $(PROGRAMS) $(METRICS) $(INTERNAL_PROGRAMS) $(TEST_PROGRAMS)

# vmlinux.h is regenerated only when the running kernel's BTF changes, so a
# second set-up rebuilds nothing.
$(BUILD)/vmlinux.h: FORCE
	@mkdir -p $(BUILD)
	@sum=$$(sha256sum < $(BTF)); \
	if [ ! -s $@ ] || [ "$$sum" != "$$(cat $@.btf-sum 2>/dev/null)" ]; then \
		echo "setup: generating $@ from $(BTF)"; \
		bpftool btf dump file $(BTF) format c > $@.tmp && mv $@.tmp $@ && \
		echo "$$sum" > $@.btf-sum; \
	fi

$(BUILD)/progs/%.bpf.o: progs/%.bpf.c $(wildcard progs/*.h) $(BUILD)/vmlinux.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/progs/%.prom.bpf.o: progs/metrics/%.bpf.c $(wildcard progs/*.h) $(BUILD)/vmlinux.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/internal/%.bpf.o: progs/internal/%.bpf.c $(wildcard progs/*.h) $(BUILD)/vmlinux.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/tests/%.bpf.o: tests/progs/%.bpf.c $(wildcard progs/*.h) $(BUILD)/vmlinux.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -c $< -o $@

run: setup
	@mkdir -p $(MOUNTPOINT)
	$(VENV)/bin/python mount.py $(MOUNTPOINT)

# The unit tier first: seconds, and what it finds broken is found before the
# mounts. tests/unit/pytest.ini keeps tests/conftest.py (kernel probes) out of it.
test: setup
	$(VENV)/bin/python -m pytest -rs tests/unit
	$(VENV)/bin/python -m pytest -rs tests --ignore=tests/unit --ignore=tests/service

unit: $(UNIT_VENV)/.installed
	$(UNIT_VENV)/bin/python -m pytest -rs tests/unit

$(UNIT_VENV)/.installed: Makefile
	[ -x $(UNIT_VENV)/bin/python ] || $(PYTHON) -m venv $(UNIT_VENV)
	$(UNIT_VENV)/bin/python -m pip install -q --disable-pip-version-check $(UNIT_PACKAGES)
	@touch $@

# KERNELS="running 6.1" for a part of the matrix; kernels/vm.py installs QEMU and
# virtme-ng where missing and fetches the kernel packages into build/kernels.
KERNELS ?=
test-kernels: setup
	$(VENV)/bin/python kernels/matrix.py $(KERNELS)

test-service: setup service-system $(SERVICE_ROOT)/.complete
	$(VENV)/bin/python -m pytest -rs tests/service

service-system:
	@missing=$$(for p in $(SERVICE_HOST_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "test-service: installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Built aside and moved into place, so that an interrupted build is not taken
# for a root; .complete names the packages it was built with.
$(SERVICE_ROOT)/.complete: FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(SERVICE_ROOT_PACKAGES)" ]; then \
		echo "test-service: building a Debian 12 root in $(SERVICE_ROOT) (about a minute)"; \
		rm -rf $(SERVICE_ROOT) $(SERVICE_ROOT).tmp && mkdir -p $(BUILD)/service && \
		debootstrap --variant=minbase --include=$(SERVICE_ROOT_PACKAGES) bookworm \
			$(SERVICE_ROOT).tmp $(DEBIAN_MIRROR) > $(BUILD)/service/debootstrap.log 2>&1 || \
			{ tail -20 $(BUILD)/service/debootstrap.log; rm -rf $(SERVICE_ROOT).tmp; exit 1; }; \
		echo "$(SERVICE_ROOT_PACKAGES)" > $(SERVICE_ROOT).tmp/.complete && \
		mv $(SERVICE_ROOT).tmp $(SERVICE_ROOT); \
	fi

bench: setup $(VENV)/.bench-installed $(BUILD)/fuse_floor $(BUILD)/bench/floors.bpf.o
	$(VENV)/bin/python bench/run.py

# Programs that walk as views do and write nothing: the kernel's share of a view.
$(BUILD)/bench/%.bpf.o: bench/progs/%.bpf.c $(BUILD)/vmlinux.h
	@mkdir -p $(@D)
	clang $(BPF_CFLAGS) -c $< -o $@

# A minimal FUSE daemon in C: what a request costs without Python (bench/fuse_floor.c).
$(BUILD)/fuse_floor: bench/fuse_floor.c
	@mkdir -p $(BUILD)
	gcc -O2 -Wall -Werror -o $@ $< $$(pkg-config --cflags --libs fuse3)

# The benchmarks' own dependencies (matplotlib), installed once, beside the test ones.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $@

# The command finds its venv and views relative to itself, so a tree installed
# with DESTDIR runs from where it lies too. It runs Python isolated (-I): not
# the working directory, PYTHONPATH nor user site-packages on sys.path. Debian's python3 makes the venv:
# a service must not depend on an interpreter from someone's PATH.
install: setup
	install -d $(DESTDIR)$(LIBDIR)/progs $(DESTDIR)$(LIBDIR)/internal \
		$(DESTDIR)$(LIBDIR)/include $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/share/doc/iterfs
	rm -f $(DESTDIR)$(LIBDIR)/progs/*.bpf.o $(DESTDIR)$(LIBDIR)/include/*.h
	install -m 0644 $(PROGRAMS) $(METRICS) $(DESTDIR)$(LIBDIR)/progs/
	install -m 0644 $(INTERNAL_PROGRAMS) $(DESTDIR)$(LIBDIR)/internal/
	install -m 0644 $(wildcard progs/*.h) $(DESTDIR)$(LIBDIR)/include/
	[ -x $(DESTDIR)$(LIBDIR)/venv/bin/python ] || /usr/bin/python3 -m venv $(DESTDIR)$(LIBDIR)/venv
	@source=$$(mktemp -d) && trap 'rm -rf "$$source"' EXIT && \
		cp -r pyproject.toml README.md iterfs "$$source" && \
		rm -rf "$$source"/iterfs/__pycache__ && \
		$(DESTDIR)$(LIBDIR)/venv/bin/python -m pip install -q --disable-pip-version-check \
			--force-reinstall --no-deps "$$source" && \
		$(DESTDIR)$(LIBDIR)/venv/bin/python -m pip install -q --disable-pip-version-check \
			"$$source"
	printf '%s\n' '#!/bin/sh' '# iterfs MOUNTPOINT [mount.py options]: mount BPF iterators as files.' \
		'lib="$$(dirname "$$(readlink -f "$$0")")/../lib/iterfs"' \
		'exec "$$lib/venv/bin/python" -I -m iterfs --objects "$$lib/progs" --headers "$$lib/include" "$$@"' \
		> $(DESTDIR)$(PREFIX)/sbin/iterfs
	chmod 0755 $(DESTDIR)$(PREFIX)/sbin/iterfs
	sed 's|/usr/local|$(PREFIX)|g' systemd/iterfs.service > $(DESTDIR)$(UNITDIR)/iterfs.service
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/iterfs/
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: $(DESTDIR)$(PREFIX)/sbin/iterfs and $(DESTDIR)$(UNITDIR)/iterfs.service"

clean:
	rm -rf $(BUILD) $(VENV) $(UNIT_VENV)

FORCE:
