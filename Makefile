# The two commands of the README: `make demo` and `make test`. Both set up everything.
PY := .venv/bin/python

.PHONY: setup demo test lint unit bench-overhead

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m aragog.demo

lint:
	.venv/bin/ruff check aragog tests benchmarks scripts
	.venv/bin/ruff format --check aragog
	.venv/bin/mypy aragog

# Unit and integration tiers only: no vLLM engines, seconds.
unit:
	$(PY) -m pytest tests --ignore=tests/e2e -q

test: setup lint
	$(PY) -m pytest -q

bench-overhead: setup
	$(PY) benchmarks/overhead_vllm.py

# Issue 5: the paper's experiment on a simulated 8xH100 fleet (real router + scheduler code);
# writes benchmarks/sim/RESULTS.md, out/*.csv and out/*.png. ~10-20 min on 2 cores.
bench-sim: setup
	$(PY) benchmarks/sim/run.py
