# framebus: `make demo` to try it, `make test` to check it. Needs Python 3.11+ and pip only.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# The interpreter is checked before anything is made with it, and a venv made by an unsupported
# one (an earlier try) is made again rather than reused. Both one-liners run on any Python.
version_of = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
supported  = $(shell $(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo yes)
ifneq ($(filter-out clean test-deps,$(or $(MAKECMDGOALS),venv)),)
  ifneq ($(call supported,$(PYTHON)),yes)
    $(error framebus needs Python 3.11 or newer, and $(PYTHON) is $(or $(call version_of,$(PYTHON)),not found): give another, e.g. make PYTHON=python3.11)
  endif
  ifneq ($(wildcard $(BIN)/python),)
    ifneq ($(call supported,$(BIN)/python),yes)
      $(info $(VENV) was made by Python $(or $(call version_of,$(BIN)/python),that is gone): making it again with $(PYTHON))
      $(shell rm -rf $(VENV))
    endif
  endif
endif

.PHONY: demo test test-deps lint bench clean dist

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

test: test-deps lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache *.egg-info dist build

# Benchmarks (benchmarks/, docs/benchmarks.md). framebus is installed only if it is not yet, and
# the bench extra's packages by name rather than as '.[bench]': pip then leaves the venv's OpenCV
# build alone (test swaps in the GUI build; '.[bench]' would reinstall the headless one beside it).
.PHONY: soak
SOAK_MINUTES ?= 30

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -I -c 'import importlib.metadata as m; m.version("framebus")' 2>/dev/null || $(BIN)/pip install -q -e .
	$(BIN)/pip install -q $$($(BIN)/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))')
	touch $@

bench: $(VENV)/.installed-bench   # every scenario, < 10 min; writes bench-results/results.{json,md}
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

soak: $(VENV)/.installed-bench    # make soak SOAK_MINUTES=2 for a quick check; SOAK_ARGS="--systems framebus"
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# A wheel and an sdist in dist/ (`pip install dist/framebus-*.whl` on any host). The wheel is built
# from the sdist, so a file missing from the sdist fails here rather than on a user's machine.
$(VENV)/.installed-dist: | $(BIN)/python
	$(BIN)/pip install -q "build>=1.2"
	touch $@

dist: $(VENV)/.installed-dist
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
