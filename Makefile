# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
# Another interpreter: `make demo PYTHON=python3.11`; start over: `make clean`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean bench bench-clients

# The interpreter is checked before anything is built, and a build that fails leaves no
# half-made virtualenv behind for the next run to trip over.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "streamrec needs Python 3.11 or newer, and '$(PYTHON)' is" \
	    "$$($(PYTHON) --version 2>&1 || echo 'not found'): name one, e.g." \
	    "make demo PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) && \
	  $(BIN)/pip install --quiet --upgrade pip && \
	  $(BIN)/pip install --quiet -e '.[embedded]' || { \
	  rm -rf $(VENV); echo "the build failed; $(VENV) was removed" >&2; exit 1; }
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/streamrec demo

test: $(VENV)/.installed-dev
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs

bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

bench-clients: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/clients.py
