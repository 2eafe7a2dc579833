# beltcast: `make run` runs the main job end to end on the public data; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TRIALS ?= 30
STUDY ?= emergence

.PHONY: install run test lint bench clean

$(BIN)/beltcast: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/beltcast

run: install
	$(BIN)/beltcast data sync
	$(BIN)/beltcast features master
	$(BIN)/beltcast features build
	$(BIN)/beltcast tune --trials $(TRIALS) --study $(STUDY)
	$(BIN)/beltcast train
	$(BIN)/beltcast promote
	$(BIN)/beltcast score
	$(BIN)/beltcast report
	@echo "outputs: outputs/backtest.json, outputs/scores_*.csv|.parquet, outputs/report_*.html; MLflow: mlruns/"

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data/features outputs

bench: install
	$(BIN)/python bench/bench_features_build.py
	$(BIN)/python bench/bench_models.py --rows 200000 --bundle-rows 20000
	$(BIN)/python bench/bench_scoring.py --driver-rows 50000
	$(BIN)/python bench/bench_serving.py --seconds 15
	$(BIN)/python bench/bench_load.py --seconds 30
	$(BIN)/python bench/bench_fuzz.py --cases 1000
