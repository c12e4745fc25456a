# corral's entry points. `make run` serves the example fleet; `make test` runs
# every check. Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck buf check-generated generate pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml sdk/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e ./sdk -e '.[postgresql,docker]'
	touch $(STAMP)

# The example worker reads a secret from corral's environment.
export WORKER_API_KEY ?= example-secret

# The venv comes first on PATH so the example workloads' python3 has the SDK.
run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/corral serve --config examples/fleet.toml

generate: install
	tools/genproto.sh

check-generated: install
	tools/check_generated.sh

lint: install
	$(BIN)/ruff check server sdk/src tests bench examples tools
	$(BIN)/ruff format --check server sdk/src tests bench examples tools
	PYTHONPATH=server:sdk/src $(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy server/corral sdk/src/corral/sdk bench

buf: install
	tools/buf_check.sh

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: check-generated lint typecheck buf pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
