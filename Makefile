# Two commands on a fresh machine:
#   make run    create .venv, install, train the default network on MNIST-1D
#   make test   install if needed (Debian's chromium too, for the report's browser test), run the whole test suite
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow install native system-deps bench bench-env bench-peers clean notebooks

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) native

# The compiled kernels (deepwell/native.py: the batched sweep's step, the loss landscape's chain MLPs): built once
# with g++ and ninja into ~/.cache/deepwell, ~15 s each; first use builds one this did not, and the Python path runs where
# none can be built.
native: $(STAMP)
	$(PY) -c 'from deepwell import native; native.main()'

run: $(STAMP)
	$(VENV)/bin/deepwell train

# The lecture as notebooks in JupyterLab (the notebooks extra). notebooks/*.py are the sources (jupytext percent
# format); --sync makes the paired .ipynb (git-ignored) that JupyterLab opens, and saving it updates the .py.
NOTEBOOKS_STAMP := $(VENV)/.installed-notebooks
$(NOTEBOOKS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[notebooks]'
	touch $(NOTEBOOKS_STAMP)

notebooks: $(NOTEBOOKS_STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.py
	$(VENV)/bin/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)  # a root shell (a container) too

# Debian packages the tests exercise: chromium (the report opens in a real browser; Playwright drives it for the
# playground's end-to-end tests, via executable_path, so no `playwright install` download), wordnet-base
# (WordNet for synonym replacement), espeak-ng (speech fixtures for the audio pipeline), ninja-build (builds the
# batched sweep's compiled step with g++; the tests compare it with the Python step). Install
# those missing when we may (root); otherwise say so and go on (the tests needing them then skip).
DEBIAN_PACKAGES := chromium:chromium wordnet-base:/usr/share/wordnet/index.noun espeak-ng:espeak-ng ninja-build:ninja g++:g++
system-deps:
	@missing=""; for entry in $(DEBIAN_PACKAGES); do pkg=$${entry%%:*}; probe=$${entry#*:}; \
		if [ -e "$$probe" ] || command -v "$$probe" >/dev/null 2>&1; then :; else missing="$$missing $$pkg"; fi; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian packages the tests use:$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "Missing Debian packages:$$missing and this is not a root Debian shell: the tests that need them will skip."; \
	fi

test: $(STAMP) system-deps native
	$(PY) -m pytest -q --durations=12   # the slowest tests, to keep the suite well under 10 minutes

# The long experiments (example protocols, whole studies, the default run's diagnosis): ~10 minutes.
test-slow: $(STAMP) system-deps native
	$(PY) -m pytest -q -m slow

# The peer benchmarks (bench/peers.py: Keras 3, Lightning, skorch, loss-landscapes) need their own
# environment so the core stays lean: .venv-bench, pinned by constraints-bench.txt (the core's torch).
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml constraints.txt constraints-bench.txt
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -c constraints-bench.txt -e . keras lightning skorch loss-landscapes
	touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

# Regenerates bench/RESULTS.md (versions, machine, commands, figures).
bench-peers: $(BENCH_STAMP)
	KERAS_BACKEND=torch $(BENCH_PY) bench/peers.py

bench: $(STAMP) bench-peers
	$(PY) bench/loop.py
	$(PY) bench/probes.py
	$(PY) bench/landscape.py
	$(PY) bench/scaling.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs .pytest_cache
