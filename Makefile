# Kappa: `make run` (example end to end) and `make test` (whole suite) on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,frameworks,postgres,s3,spark,dask,airflow,online,deploy
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export KAPPA_HOME ?= $(CURDIR)/.kappa
export PYTHONUNBUFFERED := 1

.PHONY: run test test-unit lint bench install system-deps clean

run: install ## train and save the iris example, then score the shipped data set offline
	$(BIN)/python -m examples.iris.main
	$(BIN)/kappa run IrisClassifier:latest predict --input-file examples/iris/iris.csv --id-column id \
		--output-file out/iris_predictions.parquet --report out/iris_report.json --overwrite
	@echo "predictions: $(CURDIR)/out/iris_predictions.parquet (report: out/iris_report.json)"
	@echo "bundles: KAPPA_HOME=$(KAPPA_HOME) $(BIN)/kappa list"

UNIT := not spark and not dask and not airflow and not server and not postgres and not s3 and not slow

# two pytest processes at once: the files with Spark or Airflow tests one after another (each
# uses both cores now and then), and every other file; the first's output follows the second's
CLUSTER_LOG := $(VENV)/clusters-tests.log
test: install lint ## the whole suite, integration tests included
	@$(BIN)/python -m pytest -q --clusters only -o cache_dir=.pytest_cache/clusters > $(CLUSTER_LOG) 2>&1 & \
	clusters=$$!; trap 'kill $$clusters 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest -q --clusters none; rest=$$?; \
	wait $$clusters; status=$$?; \
	echo "== the files with Spark or Airflow tests (run at the same time) =="; cat $(CLUSTER_LOG); \
	[ $$rest = 0 ] && [ $$status = 0 ]

test-unit: install ## only the fast tests, on two processes
	$(BIN)/python -m pytest -q -n 2 -m "$(UNIT)"

lint: install
	$(BIN)/ruff check kappa kappa_batch kappa_online kappa_gamma spark_jobs airflow_dags tests bench examples
	$(BIN)/mypy

PEERS := bench/.venv-peers
bench: install $(PEERS)/.installed ## benchmarks side by side with peers; record figures in bench/RESULTS.md
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(APT_INSTALL) wrk; }
	$(BIN)/python bench/run.py

$(PEERS)/.installed: Makefile ## BentoML, MLflow and Ray Data in a venv of their own, so their pins never touch ours
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q "bentoml==1.4.39" "mlflow==3.17.*" scikit-learn "pyspark==4.3.0" "ray[data]==2.60.0"
	@touch $@

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# Kappa was named `kappa` before it took `kappa-engine` on the package index
	@$(BIN)/python -m pip uninstall -q -y kappa 2>/dev/null || true
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
system-deps: ## Java for Spark, PostgreSQL for team-mode tests, Chromium for the web UI's tests (apt-get, only when missing)
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing with apt-get:$$missing"; \
		$(SUDO) apt-get update -q && $(APT_INSTALL) $$missing; \
	fi

clean:
	rm -rf $(VENV) out .kappa .pytest_cache .mypy_cache .ruff_cache
