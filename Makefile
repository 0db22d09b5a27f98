# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv (Python 3.10) from requirements.lock when it is missing or stale.
# `make docs` builds the manual (docs/, mkdocs.yml) into build/site with its own .venv-docs
# (Python 3.10, from requirements-docs.txt); links that lead nowhere fail the build.
VENV := .venv
PY := $(VENV)/bin/python
DOCS_VENV := .venv-docs
# python3.10 from PATH, or from pyenv when its shim is not set to 3.10.
PYTHON310 ?= $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo $$p && break; done)

.PHONY: install demo lint test test-fast docs lock clean

$(VENV)/.installed: setup.py requirements.lock
	@test -n "$(PYTHON310)" || { echo "Python 3.10 is needed (tfx 1.16 supports 3.9-3.10)"; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	# uv resolves nothing here: the lock is complete, so install takes a minute, not pip's long backtracking.
	$(VENV)/bin/uv pip install --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/imat run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Test files run in TEST_WORKERS processes (pytest-xdist), each file whole in one of them, so a
# module's fixture (a pipeline run, a trained model) is built once. Timed in docs/benchmarks.md,
# "Test suite time".
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

test: install lint
	$(PYTEST)

test-fast: install lint
	$(PYTEST) -m "not slow"

$(DOCS_VENV)/.installed: requirements-docs.txt
	@test -n "$(PYTHON310)" || { echo "Python 3.10 is needed (the docs' tools are pinned for it)"; exit 1; }
	$(PYTHON310) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-docs.txt
	touch $@

docs: $(DOCS_VENV)/.installed
	$(DOCS_VENV)/bin/mkdocs build --strict --site-dir build/site

# Re-resolve the lock after changing setup.py's requirements.
lock: install
	$(VENV)/bin/uv pip compile setup.py --extra test --extra kubeflow --extra similar --python-version 3.10 \
		--python-platform x86_64-manylinux_2_36 --no-header -o requirements.lock

clean:
	rm -rf $(VENV) imat-demo
