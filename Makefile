# framebus: `make demo` to try it, `make test` to check it. Needs Python 3.10+ and pip only.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

# The interpreter is checked before anything is made with it, and a venv made by an unsupported
# one (an earlier try) is made again rather than reused. Both one-liners run on any Python.
version_of = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
supported  = $(shell $(1) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && echo yes)
ifneq ($(filter-out clean test-deps test-all,$(or $(MAKECMDGOALS),venv)),)
  ifneq ($(call supported,$(PYTHON)),yes)
    $(error framebus needs Python 3.10 or newer, and $(PYTHON) is $(or $(call version_of,$(PYTHON)),not found): give another, e.g. make PYTHON=python3.12)
  endif
  ifneq ($(wildcard $(BIN)/python),)
    ifneq ($(call supported,$(BIN)/python),yes)
      $(info $(VENV) was made by Python $(or $(call version_of,$(BIN)/python),that is gone): making it again with $(PYTHON))
      $(shell rm -rf $(VENV))
    endif
  endif
endif

.PHONY: demo test test-deps test-all pytest pytest-parallel pytest-alone lint bench clean dist

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The display tests need OpenCV's GUI build: swap it in for the headless one, same version. Both
# provide cv2/, so the GUI build is force-reinstalled after the headless one is removed.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	v=$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))' 2>/dev/null \
	  || $(BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-python"))') && \
	$(BIN)/pip uninstall -q -y opencv-python-headless && \
	$(BIN)/pip install -q --force-reinstall --no-deps "opencv-python==$$v"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	@BIN=$(BIN) bash deploy/demo.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-deps:
	bash deploy/install-test-deps.sh

# The container image, with podman (docs/containers.md); tests/test_container_image.py builds it too.
.PHONY: image
image:
	bash deploy/build-image.sh

test: test-deps lint pytest

# Every test: first each one that needs no browser and no display, XDIST_WORKERS at a time
# (pytest-xdist; the tests mostly wait on processes, sockets and clocks, so three at once on two
# cores take half the time of one: 15 min instead of 32 here), then the browser and display tests one at a time, since
# their frame-rate bounds need the machine to themselves (tests/conftest.py).
XDIST_WORKERS ?= 3
pytest: pytest-parallel pytest-alone

pytest-parallel: $(VENV)/.installed-test
	$(BIN)/pytest -q -n $(XDIST_WORKERS) --dist worksteal -m "not browser and not display" $(PYTEST_ARGS)

pytest-alone: $(VENV)/.installed-test
	$(BIN)/pytest -q -m "browser or display" $(PYTEST_ARGS)

# Every supported Python, as CI runs it (.ci/run): `make test` (lint and every test) on
# $(PYTHON), then, on each other version in a venv of its own (.venv-3.10, ...), every test that
# needs no browser and no display (pytest-parallel), with 10 s of fuzzing instead of 60. Every
# version runs even when one fails; the last line says which failed.
PYTHONS    := 3.10 3.11 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
# Python 3.x: python3.x on the PATH if it runs (pyenv's shim of a version not selected does
# not), else pyenv's build of it.
python_of = $(firstword $(foreach p,python$(1) $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)),$(if $(filter $(1),$(call version_of,$(p))),$(p))))
versions  = $(foreach v,$(PYTHONS),$(v)=$(or $(call python_of,$(v)),$(error no Python $(v) here: neither python$(v) on the PATH nor $(PYENV_ROOT)/versions/$(v).*: install it (pyenv install $(v)))))

test-all: test
	@set -- $(versions); failed=""; \
	full=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	for pair; do v=$${pair%%=*}; py=$${pair#*=}; \
	  if [ "$$v" = "$$full" ]; then continue; fi; \
	  echo "== Python $$v ($$py): every test but the browser and display ones, FRAMEBUS_FUZZ_SECONDS=10"; start=$$(date +%s); \
	  FRAMEBUS_FUZZ_SECONDS=10 $(MAKE) --no-print-directory pytest-parallel VENV=.venv-$$v PYTHON=$$py \
	    || failed="$$failed $$v"; \
	  echo "== Python $$v: $$(( $$(date +%s) - start )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-all: failed on Python$$failed"; exit 1; fi; \
	echo "test-all: passed: every test on Python $$full, every one but the browser and display tests on the others"

clean:
	rm -rf $(VENV) $(PYTHONS:%=.venv-%) demo-output .pytest_cache .mypy_cache .ruff_cache *.egg-info dist build

# Benchmarks (benchmarks/, docs/benchmarks.md). framebus is installed only if it is not yet, and
# the bench extra's packages by name rather than as '.[bench]': pip then leaves the venv's OpenCV
# build alone (test swaps in the GUI build; '.[bench]' would reinstall the headless one beside it).
.PHONY: soak bench-cameras bench-bandwidth bench-pool bench-relay
SOAK_MINUTES ?= 30

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -I -c 'import importlib.metadata as m; m.version("framebus")' 2>/dev/null || $(BIN)/pip install -q -e .
	$(BIN)/pip install -q $$($(BIN)/python -c 'import sys; toml = __import__("tomllib" if sys.version_info >= (3, 11) else "tomli"); print(" ".join(toml.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))')
	touch $@

bench: $(VENV)/.installed-bench   # every scenario, ~11 min (the pool and relay ones need root: netns); writes bench-results/results.{json,md}
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

soak: $(VENV)/.installed-bench    # make soak SOAK_MINUTES=2 for a quick check; SOAK_ARGS="--systems framebus"
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

bench-cameras: $(VENV)/.installed  # N = 4, 8, 12, 16 RTSP and file cameras on one node: bench-results/cameras.{json,md}
	$(BIN)/python -m benchmarks.cameras $(CAMERAS_ARGS)

bench-bandwidth: $(VENV)/.installed  # Mbit/s by JPEG quality, size and fps: bench-results/bandwidth.{json,md}
	$(BIN)/python -m benchmarks.bandwidth

bench-pool: $(VENV)/.installed  # a worker pool of 1/2/3 members on their own hosts (root: netns), kill -9 of one: bench-results/pool.{json,md}
	$(BIN)/python -m benchmarks.pool $(POOL_ARGS)

bench-relay: $(VENV)/.installed  # relay vs direct fan-out across namespaces (root): bench-results/relay.{json,md}
	$(BIN)/python -m benchmarks.relay $(RELAY_ARGS)

# A wheel and an sdist in dist/ (`pip install dist/framebus-*.whl` on any host). The wheel is built
# from the sdist, so a file missing from the sdist fails here rather than on a user's machine.
$(VENV)/.installed-dist: | $(BIN)/python
	$(BIN)/pip install -q "build>=1.2"
	touch $@

dist: $(VENV)/.installed-dist
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
