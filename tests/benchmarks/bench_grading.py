"""Grading 30 submissions of notebook 01 on 2 cores: the sandboxed autograder against nbgrader's own `autograde`.

The submissions are made from the notebook itself: a third correct, a third with the last exercise left undone,
a third the untouched student version (stubs). Two copies of the same course folder are graded in one run, on
the same cores: one by `nbgrader autograde` (a fresh kernel per notebook, one notebook at a time, no sandbox),
one by `vitcourse.grading.autograde` as `make autograde` runs it (bubblewrap, default limits, the verdict
outside the sandbox, feedback pages, nbgrader's gradebook). The script prints both wall times, the time per
submission, the ratio (target: at most 0.3), and whether the two agree on every score.

    python tests/benchmarks/bench_grading.py [--notebook notebooks/01_patches_unfold.ipynb] [--submissions 30]
                                             [--jobs 2] [--exercises MODULE_OR_FILE] [--order ours-first]
"""
from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from vitcourse import grading
from vitcourse.confine import sandbox
from vitcourse.course.release import release, student_version
from vitcourse.judge.cells import is_solution
from vitcourse.judge.grade import Settings

REPO = Path(__file__).resolve().parents[2]
FIXTURE_TABLE = REPO / "tests" / "fixtures" / "exercises.py"


def _submissions(source: nbformat.NotebookNode, count: int) -> list[nbformat.NotebookNode]:
    student = student_version(source)
    solutions = {cell.metadata["nbgrader"]["grade_id"]: "\n".join(
        line for line in cell.source.splitlines()
        if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
        for cell in source.cells if is_solution(cell)}
    made = []
    for index in range(count):
        notebook = copy.deepcopy(student)
        kind = index % 3  # 0 correct, 1 the last exercise left undone, 2 all stubs
        answered = list(solutions) if kind == 0 else list(solutions)[:-1] if kind == 1 else []
        for cell in notebook.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in answered:
                cell.source = solutions[grade_id]
        made.append(notebook)
    return made


def _course(folder: Path, notebook: Path, submissions: list[nbformat.NotebookNode], exercises: str) -> Path:
    course = folder / "course"
    release(course, [notebook], exercises)
    for index, submitted in enumerate(submissions):
        target = course / "submitted" / f"student{index:02d}" / notebook.stem
        target.mkdir(parents=True)
        nbformat.write(submitted, target / notebook.name)
    return course


def _nbgrader(course: Path, assignment: str) -> float:
    tools = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": tools + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1",
                   "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    result = subprocess.run([str(Path(tools) / "nbgrader"), "autograde", assignment], cwd=course, env=environment,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"nbgrader autograde failed:\n{result.stderr[-3000:]}")
    return elapsed


def _scores(course: Path) -> dict[str, float]:
    """Each student's score in nbgrader's gradebook (both graders write it), via `nbgrader export`."""
    tools = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": tools + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run([str(Path(tools) / "nbgrader"), "export"], cwd=course, env=environment, check=True,
                   capture_output=True)
    with (course / "nbgrader_grades.csv").open(encoding="utf-8") as handle:  # as the course configuration says
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=REPO / "notebooks" / "01_patches_unfold.ipynb")
    parser.add_argument("--submissions", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--exercises", default=None,
                        help="the exercise table (default: vitcourse.judge.exercises, else the tests' fixture table)")
    parser.add_argument("--order", choices=("nbgrader-first", "ours-first"), default="nbgrader-first")
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        sys.exit("bubblewrap is not installed (apt-get install -y bubblewrap); the benchmark measures the sandbox.")
    exercises = args.exercises or ("vitcourse.judge.exercises" if importlib.util.find_spec("vitcourse.judge")
                                   else str(FIXTURE_TABLE))
    cores = sorted(os.sched_getaffinity(0))[: args.jobs]
    os.sched_setaffinity(0, cores)  # the graders, their kernels and their sandboxes run on these cores only
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    source = nbformat.read(args.notebook, as_version=4)
    submissions = _submissions(source, args.submissions)
    print(f"grading {args.submissions} submissions of {args.notebook.name} on {len(cores)} core"
          f"{'s' if len(cores) != 1 else ''} (cores {cores}); exercise table {exercises}")
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        theirs_course = _course(Path(folder) / "nbgrader", args.notebook, submissions, exercises)
        ours_course = _course(Path(folder) / "vitcourse", args.notebook, submissions, exercises)
        timings: dict[str, float] = {}
        labels = {"nbgrader": "nbgrader autograde (unsandboxed, one at a time)",
                  "ours": f"vitcourse autograde (sandboxed, {args.jobs} jobs)"}
        for which in (("nbgrader", "ours") if args.order == "nbgrader-first" else ("ours", "nbgrader")):
            if which == "nbgrader":
                timings[which] = _nbgrader(theirs_course, args.notebook.stem)
            else:
                start = time.perf_counter()
                grades = grading.autograde(ours_course, sandbox.Limits(), jobs=args.jobs, quiet=True,
                                           settings=Settings(exercises=exercises))
                timings[which] = time.perf_counter() - start
            print(f"  {labels[which]:48s} {timings[which]:6.1f} s, "
                  f"{timings[which] / args.submissions:5.2f} s per submission", flush=True)
        print(f"  ratio vitcourse / nbgrader: {timings['ours'] / timings['nbgrader']:.2f} (target: at most 0.3)",
              flush=True)
        theirs_scores, ours_scores = _scores(theirs_course), _scores(ours_course)
    problems = [grade for grade in grades if any(r.startswith(("grading failed", "timed out", "the kernel"))
                                                 for r in grade.reasons)]
    disagree = sorted(name for name in theirs_scores if theirs_scores[name] != ours_scores.get(name))
    print(f"  scores: distinct {sorted(set(ours_scores.values()))}; the two graders disagree on "
          f"{len(disagree)} of {len(theirs_scores)} submissions{' ' + str(disagree) if disagree else ''}; "
          f"submissions with grading problems: {len(problems)}")


if __name__ == "__main__":
    main()
