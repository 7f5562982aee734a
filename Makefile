# The two commands a new user runs: `make demo` and `make test`. Both set up what they need
# first: redis-server (installed with apt-get when missing and we are root; otherwise they
# stop and print the exact command) and .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint clean ensure-redis

ensure-redis:
	@command -v redis-server >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "redis-server is missing: installing it (apt-get update && apt-get install -y redis-server)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server && \
	  command -v redis-server >/dev/null 2>&1 || { echo "installing redis-server failed"; exit 1; }; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "redis-server is missing. Install it, then run make again:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y redis-server"; exit 1; \
	else \
	  echo "redis-server is missing. Install Redis >= 6 so that redis-server is on the PATH"; \
	  echo "(e.g. brew install redis), then run make again."; exit 1; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: any looser requirement alone pulls the multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[worker,autoscaler,gateway,dev]'
	touch $(STAMP)

demo: ensure-redis $(STAMP)
	$(BIN)/elastiq demo

# The fast default locally; under CI=true (or with ELASTIQ_TEST_ALL=1) the docker and
# fault suites run too.
test: ensure-redis $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff: the rules are in pyproject.toml ([tool.ruff]); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .

test-all: ensure-redis $(STAMP) lint
	ELASTIQ_TEST_ALL=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	-$(BIN)/elastiq down 2>/dev/null
	rm -rf $(VENV) .elastiq .pytest_cache
