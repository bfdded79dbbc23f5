# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The project's Python: the active virtual environment, else .venv/ (scripts/install.sh makes it).
PYTHON ?= $(if $(VIRTUAL_ENV),python,.venv/bin/python)
PRESET ?=
ARGS := $(if $(PRESET),--preset $(PRESET),)

.PHONY: install demo test bench

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

demo: install  ## the pipeline at the default preset (gpu with CUDA, else cpu)
	$(PYTHON) train_rm.py $(ARGS)
	$(PYTHON) merge.py $(ARGS)
	$(PYTHON) rlhf.py $(ARGS)

test: install  ## the unit tests (slow ones are marked and left out)
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/tokenizer.py
	$(PYTHON) bench/tokenizer.py --synthetic
	$(PYTHON) bench/oracle.py
	$(PYTHON) bench/generate.py
	$(PYTHON) bench/train_step.py
	$(PYTHON) bench/merge_memory.py
