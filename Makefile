# insectml: every entry point is a make target (Jenkins stages call these too).
#   make demo       set up, fetch the demo data, run the pipeline on it (local executor)
#   make test       set up, then every test (unit, CLI, Nextflow, MMS, DVC, Slurm); prints its timing
SHELL      := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV_DIR    := $(shell bash env/setup.sh --env-dir)
NODE_DIR   := $(shell bash env/setup.sh --node-dir)
export PATH := $(ENV_DIR)/venv/bin:$(PATH)
export INSECTML_CACHE ?= $(HOME)/.cache/insectml
export NUMBA_CACHE_DIR ?= $(INSECTML_CACHE)/numba
export MPLCONFIGDIR ?= $(INSECTML_CACHE)/matplotlib
export DVC_NO_ANALYTICS := 1
OUTDIR     ?= results
PROFILE    ?= standard
NXF_ARGS   ?=
PORT       ?= 8080
MGMT_PORT  ?= 8081
LAB_PORT   ?= 8888
# continuous delivery (make train-cluster / release / deploy; Jenkins' main-branch stages)
TASK          ?= wingbeat
SLURM_QUEUE   ?=
SLURM_ACCOUNT ?=
MODEL         ?= $(TASK)
RESULTS       ?= $(OUTDIR)/$(MODEL)
STAGE         ?=
ALLOW_BELOW_BASELINE ?=
STORE         ?= $(or $(INSECTML_MODEL_STORE),model-store)
MMS           ?= http://127.0.0.1:$(MGMT_PORT)
MMS_INFERENCE ?= http://127.0.0.1:$(PORT)
MMS_STORE     ?= $(OUTDIR)/serving/store
MODEL_TAG     ?=
# the smoke-test request for 'make deploy' (expanded only there)
SAMPLE_wingbeat  = data/wingbeat/recordings/aedes_aegypti/aedes_aegypti_0000.wav
SAMPLE_detector  = $(firstword $(wildcard data/detector/species/stink_bug/*.jpg))
SAMPLE_fewshot   = $(firstword $(wildcard data/fewshot/images/*/*.png))
SAMPLE        ?= $(SAMPLE_$(MODEL))

.PHONY: help setup data demo run test test-fast test-integration test-slurm slurm-up slurm-down lint serve serve-stop lock clean train-cluster release push-tags deploy

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

setup:  ## install the environment (venv + Nextflow) into $(INSECTML_CACHE); seconds when unchanged
	@bash env/setup.sh

data: setup  ## check out the pinned demo data (dvc pull from the bundled remote)
	@dvc pull -q data.dvc || { echo "make data: 'dvc pull' failed; see above" >&2; exit 1; }

run: setup data  ## nextflow run train_evaluate.nf -profile $(PROFILE) --outdir $(OUTDIR) $(NXF_ARGS)
	nextflow run train_evaluate.nf -profile $(PROFILE) --outdir $(OUTDIR) $(NXF_ARGS)

demo: run  ## the main job on the bundled demo data, then where its results are
	@echo; bin/insectml results --outdir $(OUTDIR)

test: setup data  ## every test; prints how long it took
	@start=$$(date +%s); rc=0; \
	pytest tests --durations=10 || rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s"; exit $$rc

test-fast: setup  ## unit, CLI and bad-input tests only (no Nextflow, MMS or DVC)
	pytest tests/unit tests/badinput

test-integration: setup data  ## the real engines: Nextflow, MMS, DVC (not Slurm)
	pytest tests/integration -m "not slurm" --durations=10

test-slurm: setup data  ## -profile slurm on a one-node Slurm cluster it starts (tests/slurm/cluster.sh)
	pytest tests/integration -m slurm --durations=10

slurm-up:  ## start the one-node test cluster; then: export SLURM_CONF=... (printed)
	@bash tests/slurm/cluster.sh up

slurm-down:  ## stop it
	@bash tests/slurm/cluster.sh down

lint: setup  ## ruff (Python), npm-groovy-lint (Jenkinsfile), shellcheck-style bash -n (scripts)
	ruff check lib bin/insectml tests benchmarks
	ruff check notebooks
	ruff format --check lib tests benchmarks
	$(NODE_DIR)/node_modules/.bin/npm-groovy-lint --noserver --failon error --output txt Jenkinsfile
	for f in env/setup.sh env/nextflow.sh tests/slurm/cluster.sh .ci/run; do bash -n $$f; done

serve: setup  ## start MMS on 127.0.0.1:$(PORT) with $(OUTDIR)/wingbeat/archive/wingbeat.mar
	@test -f $(OUTDIR)/wingbeat/archive/wingbeat.mar || { echo "make serve: no $(OUTDIR)/wingbeat/archive/wingbeat.mar; run 'make demo' first" >&2; exit 2; }
	bin/insectml serve start --model-store $(OUTDIR)/wingbeat/archive --model wingbeat=wingbeat.mar \
	  --state $(OUTDIR)/serving --port $(PORT) --management-port $(MGMT_PORT) \
	  --probe data/wingbeat/recordings/aedes_aegypti/aedes_aegypti_0000.wav
	@echo "serving: curl -X POST -H \"Content-Type: audio/wav\" --data-binary @data/wingbeat/recordings/culex_pipiens/culex_pipiens_0001.wav http://127.0.0.1:$(PORT)/predictions/wingbeat"
	@echo "stop with: make serve-stop"

serve-stop:  ## stop the server started by 'make serve'
	bin/insectml serve stop --state $(OUTDIR)/serving

.PHONY: notebooks lab monitor
notebooks: setup  ## notebooks/*.ipynb from the reviewed .py files (jupytext --sync: whichever is older is updated)
	@jupytext --sync --quiet notebooks/*.py

lab: notebooks  ## JupyterLab on 127.0.0.1:$(LAB_PORT) with the notebooks and the insectml kernel; prints its URL
	@token=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))'); \
	echo "make lab: http://127.0.0.1:$(LAB_PORT)/lab?token=$$token  (stop with Ctrl-C)"; \
	JUPYTER_TOKEN=$$token PYTHONPATH=$(CURDIR)/lib$${PYTHONPATH:+:$$PYTHONPATH} exec jupyter lab --no-browser \
	  --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 \
	  --ServerApp.root_dir=notebooks --MappingKernelManager.default_kernel_name=insectml \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

# the scheduled monitoring job (Jenkinsfile.monitor): served traffic vs the release's data.
# insectml monitor exits 3 on drift; make would turn that into 2, so drift is the file
# $(MONITOR_OUT)/DRIFT (the job marks the build unstable) and any other failure fails.
PREDICTION_LOG ?= $(OUTDIR)/serving/predictions
REFERENCE      ?= $(RESULTS)
MONITOR_OUT    ?= $(OUTDIR)/monitor
monitor: setup  ## drift of the prediction log PREDICTION_LOG against REFERENCE (a results folder) into MONITOR_OUT
	@mkdir -p $(MONITOR_OUT); rm -f $(MONITOR_OUT)/DRIFT; rc=0; \
	bin/insectml monitor $(PREDICTION_LOG) --reference $(REFERENCE) --out $(MONITOR_OUT) || rc=$$?; \
	if [[ $$rc == 3 ]]; then touch $(MONITOR_OUT)/DRIFT; echo "make monitor: drift, see $(MONITOR_OUT)/report.html"; exit 0; fi; \
	exit $$rc

train-cluster: setup data  ## nextflow run -profile slurm --task $(TASK) [--slurm_queue/--slurm_account] -resume
	nextflow run train_evaluate.nf -profile slurm --task $(TASK) --outdir $(OUTDIR) -resume \
	  $(if $(SLURM_QUEUE),--slurm_queue $(SLURM_QUEUE)) $(if $(SLURM_ACCOUNT),--slurm_account $(SLURM_ACCOUNT)) $(NXF_ARGS)

release: setup  ## insectml release $(RESULTS) --name $(MODEL) [--stage $(STAGE)] [--allow-below-baseline if ALLOW_BELOW_BASELINE=true] into $(STORE)
	bin/insectml release $(RESULTS) --name $(MODEL) --store $(STORE) $(if $(STAGE),--stage $(STAGE)) \
	  $(if $(filter 1 yes true,$(ALLOW_BELOW_BASELINE)),--allow-below-baseline)

push-tags:  ## push release tags (name@vX.Y.Z, name#stage#N) to origin
	git push origin --tags

deploy: setup  ## insectml deploy $(MODEL_TAG), or the latest release of $(MODEL), to the MMS at $(MMS)
	bin/insectml deploy $(or $(MODEL_TAG),$(MODEL)@$$(bin/insectml models --latest $(MODEL) --store $(STORE))) \
	  --mms $(MMS) --inference $(MMS_INFERENCE) --mms-store $(MMS_STORE) --store $(STORE) --sample $(SAMPLE)

lock:  ## re-pin env/requirements.txt from env/requirements.in (in a scratch venv), each with its sha256
	@bash env/setup.sh --lock

clean:  ## remove run outputs (not the environment cache)
	rm -rf work .nextflow .nextflow.log* $(OUTDIR)
