# Two commands on a fresh machine:
#   make run    create .venv, install, train the default network on MNIST-1D
#   make test   install if needed (Debian's chromium too, for the report's browser test), run the whole test suite
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow install system-deps bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/deepwell train

# The report test opens report.html in a real browser. Install Debian's chromium when it is
# missing and we may (root); otherwise say so and go on (that one test then skips).
system-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's chromium (for the report's browser test)..."; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else \
		echo "chromium is missing and this is not a root Debian shell: skipping it (the report's browser test will skip)."; \
	fi

test: $(STAMP) system-deps
	$(PY) -m pytest -q

# The long experiments (example protocols, whole studies, the default run's diagnosis): ~10 minutes.
test-slow: $(STAMP) system-deps
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/loop.py
	$(PY) bench/probes.py

clean:
	rm -rf $(VENV) runs .pytest_cache
