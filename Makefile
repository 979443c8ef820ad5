# Every target bootstraps .venv on a fresh machine; `make run` and `make test` are all the set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# cpu installs tensorflow-cpu; use TF_EXTRA=gpu on a CUDA machine.
TF_EXTRA ?= cpu
STAMP  := $(VENV)/.installed
DLRUN  := $(BIN)/dlrun
COURSES := outputs/courses
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install run test test-fast check-inputs lint bench course1 capacity regularization course2 imbalance \
        course3 optimizers \
        course4 tuning \
        course5 transfer \
        course6 fairness \
        reproduce clean

help:
	@echo "make run        train the default experiment (breast_cancer MLP) and print its summary"
	@echo "make test       run the test suite"
	@echo "make course1    capacity + regularization studies  -> $(COURSES)/{capacity,regularization}"
	@echo "make course2    class imbalance and augmentation  -> $(COURSES)/imbalance"
	@echo "make course3    optimizer comparison              -> $(COURSES)/optimizers"
	@echo "make course4    hyperparameter tuning: gp, forest, gbrt, random x 3 seeds -> $(COURSES)/tuning"
	@echo "make course5    transfer learning (source digits 0-4 -> 5-9) -> $(COURSES)/transfer"
	@echo "                (DATA=FRUITS360 [WEIGHTS=FILE]: an ImageNet Inception-ResNet-v2 on Fruits-360)"
	@echo "make course6    fairness audit and mitigation     -> $(COURSES)/fairness (ADULT=FOLDER adds UCI Adult)"
	@echo "make bench      speed benchmarks                  -> benchmarks/results.md"
	@echo "make check-inputs  run every bad-input case against the installed dlrun (N passed, N failed)"
	@echo "make test-cluster  SLURM end to end (a throwaway single-node SLURM if none answers; root)"
	@echo "make lint       ruff"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(TF_EXTRA),dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(DLRUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

check-inputs: $(STAMP)
	$(BIN)/python -m dlrun.tools.bad_inputs

# Not part of `make test`: it needs a SLURM cluster, or root to install and start one (a few minutes).
.PHONY: test-cluster
test-cluster: $(STAMP)
	$(BIN)/python -m dlrun.tools.cluster_check

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/ruff check dlrun tests hydra_plugins benchmarks

course1: capacity regularization

capacity: $(STAMP)
	rm -rf $(COURSES)/capacity
	$(DLRUN) experiment=capacity hydra.sweep.dir=$(COURSES)/capacity

regularization: $(STAMP)
	rm -rf $(COURSES)/regularization
	$(DLRUN) experiment=regularization hydra.sweep.dir=$(COURSES)/regularization

course2: imbalance

imbalance: $(STAMP)
	rm -rf $(COURSES)/imbalance
	$(DLRUN) experiment=imbalance hydra.sweep.dir=$(COURSES)/imbalance

course3: optimizers

optimizers: $(STAMP)
	rm -rf $(COURSES)/optimizers
	$(DLRUN) experiment=optimizers hydra.sweep.dir=$(COURSES)/optimizers

course4: tuning

# Course 4: one tuning folder per tuner and tuner seed ($(COURSES)/tuning/gp-s0, ...), two
# tunings at a time on one core each (a tuning's trials run one after another, as the
# tutorial's); then one report over them: each tuning's trials.csv and its best trial's refit.
TUNERS ?= gp forest gbrt random
TUNER_SEEDS ?= 0 1 2
tuning: $(STAMP)
	rm -rf $(COURSES)/tuning
	mkdir -p $(COURSES)/tuning
	printf '%s\n' $(foreach t,$(TUNERS),$(foreach s,$(TUNER_SEEDS),$(t)-s$(s))) | xargs -P 2 -I RUN sh -c \
	    'run=RUN; $(DLRUN) experiment=tuning tuner=$${run%-s*} tuner.seed=$${run##*-s} trainer.threads=1 \
	     hydra.sweep.dir=$(COURSES)/tuning/$$run > $(COURSES)/tuning/$$run.log 2>&1 \
	     && echo "tuning $$run done" || { echo "tuning $$run failed: see $(COURSES)/tuning/$$run.log"; exit 1; }'
	$(BIN)/dlrun-report $(COURSES)/tuning/*/refit -o $(COURSES)/tuning --kind tuning --name "course 4: hyperparameter tuning"

course5: transfer

# DATA=FOLDER (Fruits-360: Training/ and Test/) runs the original setting, an ImageNet backbone;
# WEIGHTS=FILE gives its no-top weights file (else Keras's cache ~/.keras/models/, or a download).
DATA ?=
WEIGHTS ?=
transfer: $(STAMP)
	rm -rf $(COURSES)/transfer
	$(DLRUN) hydra.sweep.dir=$(COURSES)/transfer $(if $(DATA),experiment=transfer_imagenet \
	    dataset.path=$(abspath $(DATA))/Training dataset.test_path=$(abspath $(DATA))/Test \
	    $(if $(WEIGHTS),model.weights=$(abspath $(WEIGHTS))),experiment=transfer)

course6: fairness

# ADULT=FOLDER (holding adult.data and adult.test) adds UCI Adult by sex to the same study.
ADULT ?=
comma := ,
fairness: $(STAMP)
	rm -rf $(COURSES)/fairness
	$(DLRUN) experiment=fairness hydra.sweep.dir=$(COURSES)/fairness \
	    $(if $(ADULT),dataset=credit_synthetic$(comma)adult dataset.path=$(abspath $(ADULT)))

reproduce: course1 course2 course3 course4 course5 course6

clean:
	rm -rf outputs/runs outputs/sweeps multirun
