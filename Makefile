# README command 2 is `make test`; `make setup` alone prepares .venv.
.PHONY: setup test lint bench

setup:
	bash scripts/setup.sh

test: setup
	bash scripts/run_tests.sh

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python -m bench.bench_ingest
