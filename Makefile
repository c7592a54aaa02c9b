.PHONY: run test bench
run:   ## install and run the gateway on SQLite with the sample config
	scripts/run
test:  ## install and run ruff, mypy --strict and the whole test suite (SQLite + PostgreSQL)
	scripts/test
bench: ## benchmarks (ratios against in-run baselines)
	.venv/bin/python bench/purchase_options.py && .venv/bin/python bench/settle.py
