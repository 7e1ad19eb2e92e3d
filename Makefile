# Two entry points: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench model clean

$(BIN)/charter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/charter

# The local model (Qwen2.5-Coder-0.5B-Instruct GGUF, ~490 MB) for the real-model tests and
# `charter demo --model local`: fetched once into ~/.cache/charter/models ($CHARTER_MODEL_DIR),
# verified by sha256; a no-op when already there.
model: $(BIN)/charter
	$(BIN)/python scripts/get-local-model

demo: $(BIN)/charter
	cd $$(mktemp -d) && $(CURDIR)/$(BIN)/charter demo

test: $(BIN)/charter model
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 -m "not serial"
	$(BIN)/pytest -q -m serial

bench: $(BIN)/charter
	$(BIN)/python bench/step_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
