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
# torch first, and on machines without an NVIDIA GPU the CPU build: PyPI's Linux torch wheel is the
# multi-GB CUDA build. TORCH_INDEX=auto takes PyTorch's CPU index when it answers (mirrors without it, like
# this project's CI, already serve a CPU wheel); TORCH_INDEX= (empty) installs TORCH_SPEC from the
# configured indexes, e.g. the CUDA build on GPU machines, where auto does the same.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= auto
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
DEMO_ARGS ?=

.PHONY: demo test setup apt lint clean

$(VENV)/.apt-stamp:
	@mkdir -p $(VENV)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -z "$$missing" ]; then echo "apt packages present"; touch $@; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing apt packages:$$missing"; \
	  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  then touch $@; else echo "WARNING: apt-get install failed for:$$missing (tests that need them skip)"; fi; \
	else echo "NOTE: not root; please install these Debian packages: sudo apt-get install$$missing"; fi

$(VENV)/.install-stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@idx="$(TORCH_INDEX)"; \
	if [ "$$idx" = auto ]; then idx=""; \
	  if ! command -v nvidia-smi >/dev/null && $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null; \
	  then idx="$(TORCH_CPU_INDEX)"; fi; fi; \
	echo "$(PIP) install -q \"$(TORCH_SPEC)\"$${idx:+ --index-url $$idx}"; \
	$(PIP) install -q "$(TORCH_SPEC)" $${idx:+--index-url $$idx}
	$(PIP) install -q -e ".[dev]"
	@touch $@

setup: $(VENV)/.apt-stamp $(VENV)/.install-stamp

apt: $(VENV)/.apt-stamp

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/sodakit demo $(DEMO_ARGS)

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info
