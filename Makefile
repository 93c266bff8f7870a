# The two commands a newcomer needs:  make demo  and  make test.
# Each creates ./.venv (if missing or stale) and installs everything into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint check bench soak soak-disk clean bytecode

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Bytecode for the source tree, as a wheel's install writes it: an editable install has none,
# and where PYTHONDONTWRITEBYTECODE is set every process would compile all of it again
# (0.3 s of each command's start; the tests start hundreds). Only changed files are redone.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src

demo: bytecode
	$(BIN)/mimecast-connector demo

test: bytecode
	bash scripts/ensure-rsyslog.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy --strict

check: test lint

soak: bytecode
	$(BIN)/python scripts/soak.py --minutes 10

# The same soak with the state and the outputs on small tmpfs filesystems that fill and empty
# again (root only: it mounts them).
soak-disk: bytecode
	$(BIN)/python scripts/soak.py --minutes 10 --full-disk

bench: bytecode
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/run_once.py --records 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
