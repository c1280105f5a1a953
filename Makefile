# Two entry points for a fresh machine: `make demo` and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint browser clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

# The optional ONNX Runtime / OpenVINO stack: the codec never needs it, the export tests do.
$(VENV)/.runtimes: requirements-runtimes.txt $(VENV)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-runtimes.txt
	touch $@

demo: venv
	$(BIN)/cdtcodec demo

# Ray, for corpus encoding on a cluster (`pip install cdtcodec[ray]`): the codec never needs it, the Ray test does.
$(VENV)/.ray: requirements-ray.txt $(VENV)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-ray.txt
	touch $@

# Debian's chromium, for the test that opens the bench's report.html in a real browser; where it cannot be
# installed (no apt-get, not root and no sudo), that test is skipped and says why.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "note: chromium could not be installed; the browser test will be skipped"

test: venv $(VENV)/.runtimes $(VENV)/.ray browser
	$(BIN)/python -m pytest

# ruff (pinned in requirements.txt, configured in pyproject.toml); CI runs it beside the tests.
lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
