# Linebox: `make demo` and `make test` do all set-up on a fresh Debian 12 machine.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: deps test-deps demo test bench bench-long lint prompts clean

# The demo needs Linebox and its runtime dependencies; the tests also their tools.
deps:
	@./scripts/ensure-deps

test-deps:
	@./scripts/ensure-deps --test

demo: deps
	$(VENV)/bin/linebox demo

test: test-deps
	$(VENV)/bin/ruff check firmware tests bench hwtests scripts
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# Speed and memory figures (printed, never asserted). bench-long adds the slow ones:
# transcription word error rates (~12 min) and a few hundred SIGKILLs (~15 min).
bench: test-deps
	$(PY) bench/run.py
	$(PY) bench/report_latency.py
	$(PY) bench/web_bench.py
	$(PY) bench/sip_bench.py
	$(PY) bench/gateway_bench.py
	$(PY) bench/outbound_bench.py

bench-long: bench
	$(PY) bench/wer.py
	$(PY) bench/kill_bench.py --kills 300

lint: test-deps
	$(VENV)/bin/ruff check firmware tests bench hwtests scripts

prompts: test-deps
	$(PY) scripts/make_prompts.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
