.PHONY: run sandbox check test check-config bench
run:          ## install and run the gateway on SQLite with the sample config
	scripts/run
sandbox:      ## install and run fake Stripe + fake BTCPay wired to a local gateway
	scripts/sandbox
check:        ## the inner loop, under a minute: ruff, format check, mypy, the SQLite unit tests (.venv must exist)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	GATEWAY_TEST_DATABASES=sqlite .venv/bin/pytest -q -m "not slow and not postgres"
test:         ## install and run ruff, mypy --strict and the whole test suite (SQLite + PostgreSQL)
	scripts/test
check-config: ## check settings, catalog, database and providers (.venv must exist: make run once)
	.venv/bin/checkout-gateway check-config
bench:        ## benchmarks (ratios against in-run baselines)
	.venv/bin/python bench/purchase_options.py && .venv/bin/python bench/settle.py && .venv/bin/python bench/license_validate.py
