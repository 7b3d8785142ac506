# README command 1 is `make demo` (ARGS='--bag PATH' for a recording), command 2 `make test`;
# `make setup` alone prepares .venv.
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/noksr demo $(ARGS)

test: setup
	bash scripts/run_tests.sh

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python -m bench.bench_ingest
