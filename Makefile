# Two commands from a clean clone (the README's first screen):
#   make run    installs the demo into .venv and serves it   (options: make run ARGS="--server-port 8080")
#   make test   installs what the tests need and runs them all (pytest options: make test ARGS="-k audio")
# Nothing else is needed but Python 3.10+ with venv; no system ffmpeg (audio is decoded in-process by PyAV).
#
# torch: the version the tests ran with, from PyPI, which gives NVIDIA machines the CUDA build (Linux) and
# Macs theirs; on a CPU-only Linux machine add TORCH_INDEX=https://download.pytorch.org/whl/cpu for the
# much smaller CPU build. An environment that already has torch keeps it.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test system-test-packages clean

run: $(VENV)/.installed-run
	$(BIN)/python web_demo_audio.py $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	touch $@

$(VENV)/.installed-run: $(VENV)/.installed-torch requirements.txt pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run tests/a11y/package-lock.json | system-test-packages
	$(PIP) install -q -e ".[test]"
	npm ci --prefix tests/a11y --no-audit --no-fund
	touch $@

# The browser tests drive Chromium; espeak-ng speaks their test questions; npm installs axe-core (the
# accessibility test). Installed with apt-get where missing (Debian, Ubuntu).
system-test-packages:
	@missing=""; for cmd in chromium espeak-ng npm; do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then echo "make test needs:$$missing (install them, then run make test again)"; exit 1; fi; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "installing$$missing with apt-get"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) tests/a11y/node_modules
