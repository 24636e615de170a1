# The two commands of the README: `make demo` and `make test`. Both set up everything.
PY := .venv/bin/python

.PHONY: setup demo demo-sim test lint unit bench-overhead bench-live audit soak

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m aragog.demo

# The same live view on a simulated H100 fleet with real recorded answers (no engines).
demo-sim: setup
	$(PY) -m aragog.demo --sim

lint:
	.venv/bin/ruff check aragog tests benchmarks scripts examples
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

# The policies side by side on the real local vLLM CPU fleet (tiny models, Poisson load);
# writes benchmarks/live/RESULTS.md and policies.png. ~8-12 min on 2 cores; LIVE_ARGS=...
bench-live: setup
	flock /tmp/aragog-fleet.lock $(PY) benchmarks/live_policies.py $(LIVE_ARGS)

# Known-vulnerability check of .venv (allowlist: audit-allowlist.txt). Offline it says the
# audit was not done and passes; AUDIT_STRICT=1 makes that an error.
audit:
	$(PY) scripts/audit.py

# Sustained mixed load with the gateway's RSS over time (a few minutes; SOAK_ARGS=...).
soak:
	$(PY) benchmarks/soak.py $(SOAK_ARGS)
