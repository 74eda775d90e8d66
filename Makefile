# ViT, step by step. `make lab` to learn, `make test` to check everything. Each target creates .venv if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
COURSE ?= course
NB     := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# pytest over the unit tests and every notebook (nbval compares each cell's stored output)
PYTEST := $(PY) -m pytest -n 2 --dist loadfile --nbval --nbval-current-env \
          --nbval-sanitize-with tests/sanitize.cfg

.PHONY: help env lab test test-unit test-notebooks notebooks student autograde bench lint clean

help:
	@echo "make lab        open JupyterLab on the notebooks (creates $(VENV) first if missing)"
	@echo "make test       unit tests, widget and browser tests, and nbval on every notebook"
	@echo "make notebooks  re-execute every notebook in place (deterministic outputs)"
	@echo "make student    write student versions into $(COURSE)/release (instructors)"
	@echo "make autograde  grade $(COURSE)/submitted/<student>/<assignment>/ into $(COURSE)/grades.csv"
	@echo "make bench      speed and accuracy benchmarks, printed as ratios"
	@echo "make lint       ruff over src and tests"
	@echo "make clean      remove $(VENV), $(COURSE) and caches"

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.instructor: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,instructor]'
	touch $@

lab: env
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks

# the grading tests need nbgrader, so the test environment includes the instructor extra
test: $(VENV)/.instructor
	TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PYTEST) tests $(NB)

test-unit: $(VENV)/.instructor
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile tests

test-notebooks: env
	TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PYTEST) $(NB)

notebooks: env
	$(PY) -m vitsteps.course.execute $(NB)

student: $(VENV)/.instructor
	$(PY) -m vitsteps.course.grading student --course $(COURSE) $(NB)

autograde: $(VENV)/.instructor
	$(PY) -m vitsteps.course.grading autograde --course $(COURSE)

bench: env
	@for script in tests/benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: env
	$(PY) -m ruff check src tests

clean:
	rm -rf $(VENV) $(COURSE) .pytest_cache src/*.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
