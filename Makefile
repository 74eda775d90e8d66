# ViT, step by step. `make lab` to learn, `make test` to check everything. Each target creates .venv if missing.
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
COURSE      ?= course
# the exercise table make student checks against and make autograde grades with (default: the course's setting)
EXERCISES   ?=
WORKSPACE   ?= workspace
# extra JupyterLab flags, e.g. make lab LAB_ARGS="--port 8890 --no-browser"
LAB_ARGS    ?=
# where PyTorch comes from on Linux: its CPU wheel index by default; empty for the ordinary package index only
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
NB          := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# JupyterLab refuses to start as root unless told; containers and cloud shells run as root
ROOT_FLAG   := $(if $(filter 0,$(shell id -u)),--allow-root,)
# make classroom: the course hub on this machine (see the README's "The class, live")
IS_ROOT     := $(filter 0,$(shell id -u))
# the course environment every account's JupyterLab runs in: outside root's home, from a Python every user can run
COURSE_ENV  ?= $(if $(IS_ROOT),/opt/vitsteps-course,$(CURDIR)/.classroom-env)
CLASSROOM_PYTHON ?= $(if $(IS_ROOT),/usr/bin/python3,$(PYTHON))
STUDENTS    ?= 3
PORT        ?= 8000
COURSE_ID   ?= vitsteps
# the notebooks released as assignments when the hub starts
ASSIGNMENTS ?= $(NB)
CLASSROOM_ARGS ?=
# pytest over the unit tests and every notebook (nbval compares each cell's stored output)
PYTEST      := $(PY) -m pytest -n 2 --dist loadfile --nbval --nbval-current-env \
               --nbval-sanitize-with tests/sanitize.cfg

.PHONY: help lab test test-unit test-notebooks notebooks student autograde bench results results-slurm lint clean \
        classroom classroom-stop classroom-env

help:
	@echo "make lab        install what the notebooks need, copy them into $(WORKSPACE)/ and open JupyterLab there"
	@echo "make test       unit, widget, browser and grading tests, and nbval on every notebook"
	@echo "make notebooks  re-execute every notebook in place (deterministic outputs)"
	@echo "make student    write student versions into $(COURSE)/release (instructors)"
	@echo "make autograde  grade $(COURSE)/submitted/<student>/<assignment>/ (instructors)"
	@echo "make classroom  start the course hub (JupyterHub + nbgrader, STUDENTS=3, PORT=8000); make classroom-stop"
	@echo "make bench      speed and accuracy benchmarks, printed as ratios, and the shipped results checked"
	@echo "make results    retrain everything behind the shipped mnist results (1-2 hours) and write them"
	@echo "make results-slurm  the same runs as a Slurm job array, then the same write as an afterok job"
	@echo "make lint       ruff over src, instructor, tools and tests"
	@echo "make clean      remove $(VENV), $(COURSE) and caches (never $(WORKSPACE)/: it holds your work)"

# the student environment: the package, PyTorch (CPU on Linux), JupyterLab; nothing for testing or grading
$(VENV)/.lab: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed, found " + sys.version'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) tools/install_torch.py --index "$(TORCH_INDEX)"
	@echo "Installing the vitsteps package, JupyterLab and what the notebooks need: a few minutes the first time."
	$(PY) -m pip install --progress-bar on -e '.[lab]'
	touch $@

# the developer environment: the student one plus the dev extra and the instructor tools (the grading tests need them)
$(VENV)/.dev: $(VENV)/.lab instructor/pyproject.toml
	@echo "Installing the test tools (pytest, nbval, transformers, playwright) and the instructor tools (nbgrader)."
	$(PY) -m pip install --progress-bar on -e '.[dev]' -e ./instructor
	touch $@

# the hub itself (JupyterHub) in the developer environment
$(VENV)/.hub: $(VENV)/.dev instructor/pyproject.toml
	$(PY) -m pip install --progress-bar on -e './instructor[hub]'
	touch $@

# the course environment: the light student install, nbgrader's extensions, jupyterhub-singleuser; the course
# tooling under instructor/ (readable by the instructor's group once make classroom has run)
$(COURSE_ENV)/.ready: pyproject.toml instructor/pyproject.toml
	@$(CLASSROOM_PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "nbgrader 0.9.6 needs Python 3.11+"'
	@echo "Building the course environment in $(COURSE_ENV) (a few minutes the first time)."
	test -x $(COURSE_ENV)/bin/python || $(CLASSROOM_PYTHON) -m venv $(COURSE_ENV)
	$(COURSE_ENV)/bin/python -m pip install --quiet --upgrade pip
	$(COURSE_ENV)/bin/python tools/install_torch.py --index "$(TORCH_INDEX)"
	$(COURSE_ENV)/bin/python -m pip install --quiet '.[lab]' "$$(grep -o 'nbgrader==[0-9.]*' instructor/pyproject.toml)" \
	    "$$(grep -o 'jupyterhub==[0-9.]*' instructor/pyproject.toml)"
	touch $@

$(COURSE_ENV)/.code: $(COURSE_ENV)/.ready $(shell find src/vitsteps instructor/vitcourse -type f -not -path '*/__pycache__/*' 2>/dev/null)
	$(COURSE_ENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	$(COURSE_ENV)/bin/python -m pip install --quiet --no-deps --upgrade --target $(COURSE_ENV)/instructor ./instructor
	$(COURSE_ENV)/bin/python -c 'import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], \
	    "vitsteps_course_tools.pth").write_text("$(COURSE_ENV)/instructor\n")'
	rm -rf build instructor/build
	touch $@

classroom-env: $(COURSE_ENV)/.code

classroom: $(VENV)/.hub $(COURSE_ENV)/.code
	$(PY) -m vitcourse.hub.classroom start --students $(STUDENTS) --port $(PORT) --course-id $(COURSE_ID) \
	    --course-env $(COURSE_ENV) $(CLASSROOM_ARGS) $(ASSIGNMENTS)

classroom-stop:
	$(PY) -m vitcourse.hub.classroom stop

lab: $(VENV)/.lab
	PYTHONPATH=instructor $(PY) -m vitcourse.student workspace --into $(WORKSPACE) $(NB)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(WORKSPACE) $(ROOT_FLAG) $(LAB_ARGS)

# as root the hub test runs, on the course environment made from this checkout
test: $(VENV)/.hub $(if $(IS_ROOT),$(COURSE_ENV)/.code)
	TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PYTEST) tests $(NB)

test-unit: $(VENV)/.dev
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile tests

test-notebooks: $(VENV)/.dev
	TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PYTEST) $(NB)

notebooks: $(VENV)/.dev
	$(PY) -m vitcourse.execute $(NB)

student: $(VENV)/.dev
	$(PY) -m vitcourse.grading student --course $(COURSE) $(if $(EXERCISES),--exercises $(EXERCISES)) $(NB)

autograde: $(VENV)/.dev
	$(PY) -m vitcourse.grading autograde --course $(COURSE) $(if $(EXERCISES),--exercises $(EXERCISES))

bench: $(VENV)/.dev
	@for script in tests/benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
	@echo "== tools/mnist_results.py compare"; $(PY) tools/mnist_results.py compare

# every training run behind the shipped `mnist` results (about 100 minutes on 2 cores; resumable), then the shipped
# files: the SVC and the epoch timing first, then two workers on one thread each, then the assembly
results: $(VENV)/.dev
	$(PY) tools/mnist_results.py write --threads 2 --only --no-ship
	$(PY) tools/mnist_results.py write --threads 1 --no-ship & $(PY) tools/mnist_results.py write --threads 1 --no-ship; wait
	$(PY) tools/mnist_results.py write --only

# the runs as one Slurm array (a task a run, 2 threads each; the work folder must be on storage every node sees),
# then `write` as a job that waits for them: it collects and ships exactly as above. SBATCH: more sbatch options
SBATCH      ?=
results-slurm: $(VENV)/.dev
	$(PY) tools/mnist_results.py slurm --threads 2 $(if $(SBATCH),--sbatch "$(SBATCH)")

lint: $(VENV)/.dev
	$(PY) -m ruff check src instructor tools tests

clean:
	rm -rf $(VENV) $(COURSE) .pytest_cache src/*.egg-info instructor/*.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
