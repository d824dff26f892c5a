# pymalloc_real: the two commands a fresh machine needs are `make demo` and `make test`.
# Both create the virtualenv (.venv), install the build tools and the package in
# editable mode (which compiles the C core with cffi), and rebuild whenever a C source
# or the builder changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
SOURCES := $(wildcard csrc/*/*.c csrc/*/*.h pymalloc_real/*.c) pymalloc_real/_build.py setup.py pyproject.toml

.PHONY: all build demo test bench bench-python clean distclean peers fuzz fuzz-deps unwind browser

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel "cffi>=1.16"

# libunwind's headers first (order-only: installing them once does not force rebuilds),
# so the preload library is built with the recorder's call stacks.
$(STAMP): $(PY) $(SOURCES) | unwind
	$(PIP) install --no-build-isolation -e '.[test]'
	@touch $@

build: $(STAMP)

demo: build
	$(VENV)/bin/pymalloc-real demo

test: build peers fuzz-deps browser
	$(PY) -m pytest -q

# Every workload on every allocator (`make bench BENCH_ARGS=--quick` for a short run;
# `make peers` installs the peers it compares against); results in benchmarks/results/.
BENCH_ARGS ?=
bench: build
	$(VENV)/bin/pymalloc-real bench $(BENCH_ARGS)

# A malloc+free pair through the Python API against libc's through cffi.
bench-python: build
	$(PY) benchmarks/bench_python_api.py

# $(call install_missing,TARGET,PACKAGES): install the Debian packages that are missing.
# Only missing ones, so depending on a target that uses it costs nothing once they are
# there; sudo only when not root; a stale package list is refreshed once.
define install_missing
	@pkgs="$(2)"; missing=""; \
	for p in $$pkgs; do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	echo "$(1): installing$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing \
	  || { $$sudo apt-get update && \
	       $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; }
endef

# The peer allocators that `pymalloc-real compare` runs beside ours, as Debian packages.
peers:
	$(call install_missing,peers,libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4)

# libunwind (Debian's libunwind-dev), which the preload library links for the
# recorder's call stacks (csrc/preload/callstack.h says why).
unwind:
	$(call install_missing,unwind,libunwind-dev)

# Headless Chromium and its WebDriver, for tests/test_report.py, which opens a report in a
# real browser (selenium drives it).
browser:
	$(call install_missing,browser,chromium chromium-driver)

# The libFuzzer target over the checked core (fuzz/fuzz_core.c) needs clang and its
# libFuzzer runtime; tests/test_fuzz.py gives it a bounded run, `make fuzz` a long one
# (FUZZ_SECONDS, default an hour; the corpus grows in fuzz/corpus, crashes land in fuzz/).
FUZZ_SECONDS ?= 3600
FUZZ_JOBS ?= 2
fuzz-deps:
	$(call install_missing,fuzz-deps,clang libclang-rt-14-dev)

fuzz: fuzz-deps
	fuzz/build.sh
	mkdir -p fuzz/corpus
	fuzz/bin/fuzz_core -fork=$(FUZZ_JOBS) -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -artifact_prefix=fuzz/ -print_final_stats=1 fuzz/corpus

clean:
	rm -rf build pymalloc_real/_core.c pymalloc_real/*.so pymalloc_real/*.o tests/c/bin \
	       benchmarks/bin fuzz/bin .pytest_cache .hypothesis *.egg-info $(STAMP)
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
