# The two set-up commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CRISPOPS := $(BIN)/crispops

.PHONY: demo test lint typecheck check bench clean venv containers

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,spark]'
	touch $(STAMP)

demo: $(STAMP)
	$(CRISPOPS) demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

BENCH ?= pipeline
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf .crispops local_outputs feature_repo/data

# Containers without Docker (podman): prepare the machine (root), build both images,
# run the pipeline with every step in the components' image, then build the Bento image.
containers: $(STAMP)
	bash scripts/prepare-containers.sh
	DOCKER_HOST=unix:///run/crispops-podman.sock $(CRISPOPS) images build
	DOCKER_HOST=unix:///run/crispops-podman.sock $(CRISPOPS) run --runner docker
	DOCKER_HOST=unix:///run/crispops-podman.sock $(CRISPOPS) images build
