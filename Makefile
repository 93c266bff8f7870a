# The two commands a newcomer needs:  make demo  and  make test.
# Each creates ./.venv (if missing or stale) and installs everything into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint check bench soak soak-disk clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mimecast-connector demo

test: $(STAMP)
	bash scripts/ensure-rsyslog.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy --strict

check: test lint

soak: $(STAMP)
	$(BIN)/python scripts/soak.py --minutes 10

# The same soak with the state and the outputs on small tmpfs filesystems that fill and empty
# again (root only: it mounts them).
soak-disk: $(STAMP)
	$(BIN)/python scripts/soak.py --minutes 10 --full-disk

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/run_once.py --records 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
