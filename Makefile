# mcc — set-up, demo and tests. `make demo` and `make test` install everything they need themselves.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.mcc-installed
APT_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist

.PHONY: setup apt-deps demo demo-ir test lint typecheck clean

setup: $(STAMP) apt-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,nas]'
	touch $(STAMP)

# Cross compiler and emulator for the Cortex-M builds, Fashion-MNIST for the demo and the NAS (installed only when
# missing; needs root on Debian).
apt-deps:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
	  && [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing $(APT_PKGS)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	else echo "note: install $(APT_PKGS) (apt-get, as root) for the Cortex-M builds"; fi

# Train a CNN on Fashion-MNIST, compile it with mcc -O3 for Cortex-M7, run the int8 C on the 10,000 test images.
demo: setup
	$(PY) examples/fashion_mnist.py

# Optimise the bundled .mir example and check the result is bit-identical in the reference interpreter.
demo-ir: setup
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy

test: setup lint typecheck
	$(PY) -m pytest -q -n auto

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .mypy_cache .hypothesis mcc-reproducers
