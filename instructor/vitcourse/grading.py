"""Student versions and trusted autograding for the notebook series (instructors only).

    python -m vitcourse.grading student --course course notebooks/01_patches_unfold.ipynb ...
    python -m vitcourse.grading autograde --course course [--jobs 2] [--exercises MODULE_OR_FILE] [--no-sandbox]

The course folder follows nbgrader's layout, one assignment per notebook (assignment = notebook stem):

    course/nbgrader_config.py                      the course's settings, nbgrader's and the grader's (`c.VitCourse`)
    course/gradebook.db                            nbgrader's gradebook: assignments, students, scores
    course/source/<assignment>/<notebook>.ipynb    the instructor's notebook, solutions and hidden tests
    course/release/<assignment>/<notebook>.ipynb   the student version: stubs, no hidden tests, no outputs
    course/submitted/<student>/<assignment>/<notebook>.ipynb   what students hand in (never modified)
    course/autograded/<student>/<assignment>/<notebook>.ipynb  the graded run (outputs up to the first grading)
    course/feedback/<student>/<assignment>/<notebook>.html     the student's cells and the grader's verdicts
    course/grades.csv                              one row per submission folder, refused ones with the reason

How a submission is graded. Every instructor cell comes from `source/` (matched by grade id and cell id);
only the solution cells and the cells the student added come from the submission. Test cells run as the
students saw them, without their hidden tests, which never enter the student's process. The notebook runs in
the sandbox (`vitcourse.confine.sandbox`); right after each graded test cell, the grader calls the student's function
on inputs it makes from a secret seed and decides each exercise in its own process (`vitcourse.judge.verdict`), with
the exercise table's `verdict`. A wrong answer cannot score, whatever the student's code does to its own
process. Calls to the package's reference or to a forbidden function during the grader's calls, a copy of the
reference's code, and code the static scan flags (`vitcourse.judge.scan`) earn `flagged_credit` of the points (0 by
default) and are named in the row's reason. Outputs produced after the first graded test are kept out of the
graded notebook and the feedback: from then on the student's process has held the grader's inputs.

Before any submission, each assignment's own source notebook is graded through the same path (`calibrate`):
it must score full marks, and its time sets each notebook's wall-clock budget (`budget_factor` times it, at
least `budget_floor_s`, at most the notebook limit); a submission past it is ended and its remaining exercises
score 0 with the reason. Submission files are read without following links and parsed in a bounded process
(`vitcourse.confine.files`).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import secrets
import sys
import time
from pathlib import Path

import nbformat

from .confine import sandbox
from .course import gradebook
from .course.release import release
from .course.settings import _require_nbgrader, course_settings
from .course.submissions import course_notebooks, find_submissions, grade_submission, read_submitted, write_grades
from .judge import verdict as judge
from .judge.cells import is_solution, is_test, shown_number
from .judge.grade import Grade, Job, Settings, grade_notebook


def autograde(course: Path, limits: sandbox.Limits | None = None, use_sandbox: bool = True, jobs: int | None = None,
              quiet: bool = False, settings: Settings | None = None, use_cgroups: bool | None = None) -> list[Grade]:
    """Grade every submission under `course/submitted/`; write grades.csv, the gradebook and the feedback.

    Args:
        course: the course folder.
        limits: what each submission may use (`sandbox.Limits()` by default).
        use_sandbox: run student code in bubblewrap; False is for trusted notebooks only.
        jobs: notebooks graded at once (default: the CPU count, at most 8).
        quiet: print nothing.
        settings: the course's settings (default: read from the course's nbgrader_config.py).
        use_cgroups: as in `sandbox.Sandbox`.

    Raises:
        SandboxUnavailable: `use_sandbox` is set and bubblewrap cannot run here.
        TableUnavailable: the exercise table cannot be imported.
        FileNotFoundError: the course folder has no `submitted/` or `source/`.
    """
    limits = limits or sandbox.Limits()
    if use_sandbox:
        sandbox.find_bwrap()
    if not (course / "source").is_dir():
        raise FileNotFoundError(f"{course / 'source'} does not exist: run `make student` first.")
    if not (course / "submitted").is_dir():
        raise FileNotFoundError(f"{course / 'submitted'} does not exist: put submissions in "
                                f"{course / 'submitted'}/<student>/<assignment>/<notebook>.ipynb.")
    settings = settings or course_settings(course)
    table = judge.load_table(settings.exercises)
    submissions, grades = find_submissions(course)
    preload: set[str] = set()
    for path in {course / "source" / s.assignment / s.notebook for s in submissions if s.path is not None}:
        cells = nbformat.read(path, as_version=4).cells
        preload |= sandbox.imports_of(cell.source for cell in cells if cell.cell_type == "code"
                                      and not is_solution(cell))
    jobs = max(1, jobs or min(len(os.sched_getaffinity(0)), 8))
    warm = sandbox.Sandbox(limits, sandboxed=use_sandbox, preload=preload, watch=table.watched(),
                           use_cgroups=use_cgroups)
    if any(s.path is not None for s in submissions):
        warm.start()
    job = Job(warm, table, settings, secrets.token_bytes(32))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            notebooks = sorted({(s.assignment, s.notebook) for s in submissions if s.path is not None})
            for (assignment, notebook), seconds in zip(notebooks, pool.map(
                    lambda key: calibrate(course, key[0], key[1], job), notebooks), strict=True):
                if seconds is not None:
                    job.budgets[f"{assignment}/{notebook}"] = limits.with_budget(
                        seconds, settings.budget_factor, settings.budget_floor_s)
                    if not quiet:
                        print(f"calibrated {assignment}/{notebook}: the solution took {seconds:.2f} s; budget "
                              f"{job.budgets[f'{assignment}/{notebook}'].notebook_timeout:.3g} s", flush=True)
            futures = [pool.submit(grade_submission, course, submission, job) for submission in submissions]
            for future in concurrent.futures.as_completed(futures):
                grade = future.result()
                grades.append(grade)
                if not quiet:
                    reason = f"  ({'; '.join(grade.reasons)})" if grade.reasons else ""
                    print(f"graded {grade.student}/{grade.assignment}/{grade.notebook}: "
                          f"{shown_number(grade.points)}/{shown_number(grade.max_points)}{reason}", flush=True)
    finally:
        warm.close()
    path = write_grades(course, grades)
    recorded = gradebook.record(course, grades)
    if not quiet:
        rows = f"{len(grades)} row{'s' if len(grades) != 1 else ''}"
        print(f"wrote {path} ({rows}), {recorded} notebook(s) into nbgrader's gradebook, and feedback in "
              f"{course / 'feedback'} ({warm.guarantees})")
    return grades


class CalibrationFailed(RuntimeError):
    """The assignment's own solution does not score full marks: the exercise table or the environment is broken."""


def calibrate(course: Path, assignment: str, notebook: str, job: Job) -> float | None:
    """Grade the assignment's source notebook (its solution) through the path a submission takes, and return the
    seconds it took; None when the assignment has no graded exercise.

    Raises:
        CalibrationFailed: the solution does not score full marks.
    """
    source, released = course_notebooks(course, assignment, notebook)
    if not any(is_test(cell) for cell in source.cells):
        return None
    grade = Grade("(calibration)", assignment, notebook)
    started = time.perf_counter()
    submitted = read_submitted(course / "source" / assignment / notebook, job.settings)
    grade_notebook(source, released, submitted, grade, job)
    seconds = time.perf_counter() - started
    if grade.max_points <= 0 or grade.points < grade.max_points:
        wrong = [f"{grade_id}: {grade.verdicts.get(grade_id, '')}" for grade_id, (got, out_of)
                 in grade.exercises.items() if got < out_of]
        raise CalibrationFailed(
            f"the solution of {assignment}/{notebook} (course/source) scored {shown_number(grade.points)}/"
            f"{shown_number(grade.max_points)} when graded, so no submission was graded: the exercise table "
            f"({job.table.source!r}) or the environment is broken. " + "; ".join(wrong[:3] + grade.reasons[:3]))
    return seconds


# ------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.grading", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write source and student versions into the course folder")
    student.add_argument("--course", type=Path, required=True, help="the course folder (created if missing)")
    student.add_argument("--exercises", default=None, help="the exercise table (module or .py file) to check against")
    student.add_argument("notebooks", nargs="+", type=Path)
    grade = commands.add_parser("autograde", help="grade every submission under COURSE/submitted/")
    grade.add_argument("--course", type=Path, required=True)
    grade.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: the CPU count)")
    grade.add_argument("--exercises", default=None,
                       help=f"the exercise table, a module or a .py file (default: the course's setting, "
                            f"else {judge.DEFAULT_TABLE})")
    grade.add_argument("--flagged-credit", type=float, default=None,
                       help="fraction of the points a flagged exercise keeps (default: the course's setting, else 0)")
    grade.add_argument("--cell-timeout", type=float, default=sandbox.Limits.cell_timeout, help="seconds per cell")
    grade.add_argument("--notebook-timeout", type=float, default=sandbox.Limits.notebook_timeout,
                       help="seconds per notebook, wall clock: the most a notebook's budget (budget_factor x "
                            "the solution's time) may be")
    grade.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb,
                       help="memory per submission, all its processes together, MiB")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run student code without bubblewrap (per-process limits only): trusted code only")
    args = parser.parse_args(argv)
    _require_nbgrader()
    if args.command == "student":
        try:
            release(args.course, args.notebooks, args.exercises)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        return 0
    try:
        limits = sandbox.Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                                memory_mb=args.memory_mb)
        settings = course_settings(args.course)
        settings = dataclasses.replace(settings, **{key: value for key, value in (
            ("exercises", args.exercises), ("flagged_credit", args.flagged_credit)) if value is not None})
    except ValueError as error:
        parser.error(str(error))
    if args.no_sandbox:
        print("warning: --no-sandbox: student code runs with per-process limits only, with your permissions.",
              file=sys.stderr)
    try:
        autograde(args.course, limits, use_sandbox=not args.no_sandbox, jobs=args.jobs, settings=settings)
    except sandbox.SandboxUnavailable as error:
        print(f"autograde refused: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, judge.TableUnavailable, CalibrationFailed) as error:
        print(f"autograde: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
