# The two commands a new user runs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint clean

$(STAMP): pyproject.toml
	@command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: any looser requirement alone pulls the multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[worker,autoscaler,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/elastiq demo

# The fast default locally; under CI=true (or with ELASTIQ_TEST_ALL=1) the docker and
# fault suites run too.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	ELASTIQ_TEST_ALL=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	-$(BIN)/elastiq down 2>/dev/null
	rm -rf $(VENV) .elastiq .pytest_cache
