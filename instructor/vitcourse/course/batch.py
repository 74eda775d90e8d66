"""Grading a set of submissions with one warm sandbox: the assignments' solutions timed first (each notebook's
budget), then the submissions, `jobs` at once. `autograde` grades a whole class this way, a shard its share.
"""
from __future__ import annotations

import concurrent.futures
import os
import secrets
import time
from pathlib import Path

import nbformat

from ..confine import sandbox
from ..judge import verdict as judge
from ..judge.cells import is_solution, is_test, shown_number
from ..judge.grade import Grade, Job, Settings, grade_notebook
from .submissions import Submission, course_notebooks, grade_submission, read_submitted


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


def grade_all(course: Path, submissions: list[Submission], limits: sandbox.Limits, settings: Settings,
              use_sandbox: bool = True, jobs: int | None = None, quiet: bool = False,
              use_cgroups: bool | None = None) -> tuple[list[Grade], str]:
    """Grade `submissions` of the course folder `course`; return their grades and the limits that held (in words).

    Raises:
        CalibrationFailed: an assignment's solution does not score full marks.
        SandboxUnavailable, TableUnavailable: as `vitcourse.grading.autograde`.
    """
    table = judge.load_table(settings.exercises)
    preload: set[str] = set()
    for path in {course / "source" / s.assignment / s.notebook for s in submissions if s.path is not None}:
        cells = nbformat.read(path, as_version=4).cells
        preload |= sandbox.imports_of(cell.source for cell in cells if cell.cell_type == "code"
                                      and not is_solution(cell))
    jobs = max(1, jobs or min(len(os.sched_getaffinity(0)), 8))
    warm = sandbox.Sandbox(limits, sandboxed=use_sandbox, preload=preload, use_cgroups=use_cgroups)
    if any(s.path is not None for s in submissions):
        warm.start()
    job = Job(warm, table, settings, secrets.token_bytes(32))
    grades: list[Grade] = []
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
    return grades, warm.guarantees
