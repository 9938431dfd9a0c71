# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: demo test test-slow validate lint format typecheck bench sample-data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the declared or pinned dependencies change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

## demo: create .venv, install recsim and run the whole loop on sample_data/
demo: $(STAMP)
	$(BIN)/recsim --version
	$(BIN)/recsim ingest sample_data/events.csv.gz --items sample_data/items.csv.gz \
		--data $(DEMO)/recsim-data --replace
	$(BIN)/recsim train pop --data $(DEMO)/recsim-data --registry $(DEMO)/models \
		--candidates popular --ranker none --force
	$(BIN)/recsim train als-lgbm --data $(DEMO)/recsim-data --registry $(DEMO)/models --force
	$(BIN)/recsim models --registry $(DEMO)/models
	$(BIN)/recsim recommend als-lgbm --registry $(DEMO)/models --k 10 --out $(DEMO)/recs.parquet
	$(BIN)/recsim evaluate pop als-lgbm --registry $(DEMO)/models --k 10 \
		--json $(DEMO)/evaluate.json --html reports/evaluate.html
	@echo "== Estimate an A/B test of pop and als-lgbm from the sample logs (an invalid"
	@echo "== result is expected: the logging policy rarely shows what the models recommend)"
	$(BIN)/recsim abtest --control pop --treatment als-lgbm --data $(DEMO)/recsim-data \
		--registry $(DEMO)/models --gate examples/offpolicy-gate.toml \
		--report $(DEMO)/estimate.json --markdown $(DEMO)/estimate.md \
		|| echo "recsim abtest exited $$? (0 ship, 1 no ship, 3 inconclusive, 4 invalid)"
	@echo "== The same in a world whose logs explore the whole catalogue, then the truth"
	$(BIN)/recsim simulate --users 8000 --items 60 --pool-size 60 --epsilon 0.6 --days 10 \
		--seed 7 --out $(DEMO)/ope-logs
	$(BIN)/recsim ingest $(DEMO)/ope-logs/events.csv.gz --items $(DEMO)/ope-logs/items.csv.gz \
		--data $(DEMO)/ope-data --replace
	$(BIN)/recsim train pop --data $(DEMO)/ope-data --registry $(DEMO)/ope-models \
		--candidates popular --ranker none --config examples/whole-catalogue.toml --force
	$(BIN)/recsim train als-lgbm --data $(DEMO)/ope-data --registry $(DEMO)/ope-models \
		--n-candidates 60 --config examples/whole-catalogue.toml --force
	$(BIN)/recsim abtest --control pop --treatment als-lgbm --data $(DEMO)/ope-data \
		--registry $(DEMO)/ope-models --gate examples/offpolicy-gate.toml \
		--report $(DEMO)/ope-estimate.json --markdown $(DEMO)/ope-estimate.md \
		|| echo "recsim abtest exited $$? (0 ship, 1 no ship, 3 inconclusive, 4 invalid)"
	$(BIN)/recsim simulate abtest --world $(DEMO)/ope-logs --registry $(DEMO)/ope-models \
		--control pop --treatment als-lgbm --replicates 50
	$(BIN)/recsim simulate --users 2000 --items 2000 --days 14 --seed 1 \
		--policies prod,personal --split 50/50 --out $(DEMO)/ab-logs
	$(BIN)/recsim ingest $(DEMO)/ab-logs/events.csv.gz --items $(DEMO)/ab-logs/items.csv.gz \
		--data $(DEMO)/ab-data --replace
	$(BIN)/recsim abtest --data $(DEMO)/ab-data --arm-column policy \
		--control prod --treatment personal --gate examples/gate.toml \
		--report $(DEMO)/abtest.json --markdown $(DEMO)/abtest.md --html reports/abtest.html
	@echo "== Promotion: a first production model (forced: there is nothing to compare it"
	@echo "== with), then als-lgbm gated against it, promoted to the live test, exported"
	$(BIN)/recsim train fresh --data $(DEMO)/ope-data --registry $(DEMO)/ope-models \
		--candidates fresh --ranker none --config examples/whole-catalogue.toml --force
	$(BIN)/recsim promote fresh --to production --registry $(DEMO)/ope-models --force \
		--reason bootstrap
	$(BIN)/recsim abtest --control production --treatment als-lgbm --data $(DEMO)/ope-data \
		--registry $(DEMO)/ope-models --gate examples/offpolicy-gate.toml \
		--report $(DEMO)/gate.json --markdown $(DEMO)/gate.md
	$(BIN)/recsim promote als-lgbm --to candidate --gate-report $(DEMO)/gate.json \
		--registry $(DEMO)/ope-models --reason "make demo"
	$(BIN)/recsim promote --history --registry $(DEMO)/ope-models
	$(BIN)/recsim export candidate --registry $(DEMO)/ope-models --to sqlite:///$(DEMO)/recs.db
	$(BIN)/recsim serve-check --from sqlite:///$(DEMO)/recs.db --users 10000
	@echo "== Reports to open in a browser: reports/evaluate.html and reports/abtest.html"

## test: lint, format check, type check and the test suite (without slow tests)
test: $(STAMP)
	$(BIN)/ruff check recsim_cli tests bench
	$(BIN)/ruff format --check recsim_cli tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

## validate: thousands of simulated experiments; writes docs/validation.md (several hours;
## the off-policy part resumes from .validate-cache, e.g. after a change to an estimator)
validate: $(STAMP)
	$(BIN)/python -m recsim_cli.experiment.validate --out docs/validation.md
	$(BIN)/python -m recsim_cli.experiment.validate_offpolicy --out docs/validation.md --cache .validate-cache

format: $(STAMP)
	$(BIN)/ruff format recsim_cli tests bench
	$(BIN)/ruff check --fix recsim_cli tests bench

bench: $(STAMP)
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/abtest.py

## sample-data: regenerate sample_data/ (a test checks it is byte-identical)
sample-data: $(STAMP)
	$(BIN)/recsim simulate --users 1200 --items 2000 --days 14 --seed 20261125 --out sample_data

clean:
	rm -rf $(VENV) $(DEMO) reports .mypy_cache .ruff_cache .pytest_cache
