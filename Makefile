# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The project's Python: the active virtual environment, else .venv/ (scripts/install.sh makes it).
PYTHON ?= $(if $(VIRTUAL_ENV),python,.venv/bin/python)
PRESET ?=
ARGS := $(if $(PRESET),--preset $(PRESET),)
# Processes for train_rm.py and rlhf.py (torchrun): on a CPU two one-thread processes do about 1.4x the work of
# one two-thread process, since the models are too small to keep two threads busy; one GPU takes one process.
JOBS ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 || [ "$$(nproc 2>/dev/null || echo 1)" -lt 2 ]; then echo 1; else echo 2; fi)
LAUNCH := $(if $(filter 1,$(JOBS)),$(PYTHON),OMP_NUM_THREADS=1 $(PYTHON) -m torch.distributed.run --standalone --nproc_per_node=$(JOBS))

.PHONY: install demo test bench

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

demo: install  ## the pipeline at the default preset (gpu with CUDA, else cpu)
	$(LAUNCH) train_rm.py $(ARGS)
	$(PYTHON) merge.py $(ARGS)
	$(LAUNCH) rlhf.py $(ARGS)

test: install  ## the unit tests (slow ones are marked and left out)
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/tokenizer.py
	$(PYTHON) bench/tokenizer.py --synthetic
	$(PYTHON) bench/oracle.py
	$(PYTHON) bench/generate.py
	$(PYTHON) bench/train_step.py
	$(PYTHON) bench/merge_memory.py
