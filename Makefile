# sodakit: two commands are the contract.
#   make demo  - set up .venv (and apt packages when root), then run the embedded default end to end
#   make test  - set up, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Debian packages: speech synthesis voices for the offline corpus/benchmarks, audio tools, and
# chromium for the report's browser test.
APT_PACKAGES := espeak-ng flite sox ffmpeg libsndfile1 chromium chromium-driver
# torch first, pinned to the CPU wheel that lies on disk here, so pip never pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_ARGS ?=

.PHONY: demo test setup apt lint clean

$(VENV)/.apt-stamp:
	@mkdir -p $(VENV)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "apt packages present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing apt packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	    || echo "WARNING: apt-get install failed for:$$missing"; \
	else echo "NOTE: not root; please install these Debian packages: sudo apt-get install$$missing"; fi
	@touch $@

$(VENV)/.install-stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	@touch $@

setup: $(VENV)/.apt-stamp $(VENV)/.install-stamp

apt: $(VENV)/.apt-stamp

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/sodakit demo $(DEMO_ARGS)

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
