"""Student versions and trusted autograding for the notebook series (instructors only).

    python -m vitcourse.grading student --course course notebooks/01_patches_unfold.ipynb ...
    python -m vitcourse.grading autograde --course course [--jobs 2] [--exercises MODULE_OR_FILE] [--no-sandbox]
    python -m vitcourse.grading autograde --course course --shard I/N    # one of N batch jobs (vitcourse.cluster)
    python -m vitcourse.grading merge --course course --shards N         # the N shards into one gradebook

The course folder follows nbgrader's layout, one assignment per notebook (assignment = notebook stem):

    course/nbgrader_config.py                      the course's settings, nbgrader's and the grader's (`c.VitCourse`)
    course/gradebook.db                            nbgrader's gradebook: assignments, students, scores
    course/source/<assignment>/<notebook>.ipynb    the instructor's notebook, solutions and hidden tests
    course/release/<assignment>/<notebook>.ipynb   the student version: stubs, no hidden tests, no outputs
    course/submitted/<student>/<assignment>/<notebook>.ipynb   what students hand in (never modified)
    course/autograded/<student>/<assignment>/<notebook>.ipynb  the notebook's own run, every output kept
    course/feedback/<student>/<assignment>/<notebook>.html     the student's cells and the grader's verdicts
    course/grades.csv                              one row per submission folder, refused ones with the reason

How a submission is graded. Every instructor cell comes from `source/` (matched by grade id and cell id);
only the solution cells and the cells the student added come from the submission. Test cells run as the
students saw them, without their hidden tests, which never enter the student's process. The notebook runs once in
the sandbox (`vitcourse.confine.sandbox`) for its outputs; no input of the grader's enters that process. Each
exercise is then judged in a graded run of its own (`vitcourse.judge.grade.graded_run`): a new process whose
ruled-out routes are closed before any student code runs, which runs the cells the function needs, and where the
grader calls the function on inputs it makes from a secret seed and decides in its own process
(`vitcourse.judge.verdict`, with the exercise table's `verdict`). A wrong answer cannot score, nor a ruled-out
route, whatever the student's code does to its own process. A copy of the package's own solution and code the
static scan flags (`vitcourse.judge.scan`) earn `flagged_credit` of the points (0 by default) and are named in
the row's reason.

Before any submission, each assignment's own source notebook is graded through the same path (`calibrate`):
it must score full marks, and its time sets each notebook's wall-clock budget (`budget_factor` times it, at
least `budget_floor_s`, at most the notebook limit); a submission past it is ended and its remaining exercises
score 0 with the reason. Submission files are read without following links and parsed in a bounded process
(`vitcourse.confine.files`).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .cluster import shards as cluster
from .confine import sandbox
from .course import batch, gradebook
from .course.release import release
from .course.settings import _require_nbgrader, course_settings
from .course.submissions import find_submissions, write_grades
from .judge import verdict as judge
from .judge.grade import Grade, Settings


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
    submissions, grades = find_submissions(course)
    graded, guarantees = batch.grade_all(course, submissions, limits, settings, use_sandbox, jobs, quiet, use_cgroups)
    grades += graded
    path = write_grades(course, grades)
    recorded = gradebook.record(course, grades)
    if not quiet:
        rows = f"{len(grades)} row{'s' if len(grades) != 1 else ''}"
        print(f"wrote {path} ({rows}), {recorded} notebook(s) into nbgrader's gradebook, and feedback in "
              f"{course / 'feedback'} ({guarantees})")
    return grades


# ------------------------------------------------------------------------------------------ command line

GRADE_ELSEWHERE = (
    "Grading needs bubblewrap with unprivileged user namespaces (and, for limits on a whole submission's memory and "
    "processes, cgroups it may write). A JupyterHub pod or a locked-down container often refuses user namespaces; "
    "then grade elsewhere from the collected folder: copy the course folder (after `nbgrader collect`) to your own "
    "machine or a VM, run `python -m vitcourse.grading autograde --course <folder>` there, copy back gradebook.db "
    "and feedback/, and run `nbgrader release_feedback` on the hub (README: \"Grading where the hub is\").")


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
    _add_cluster_options(grade, commands)
    args = parser.parse_args(argv)
    _require_nbgrader()
    if args.command == "merge":
        return _merge(args)
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
        shard = cluster.resolve_shard(args.shard, args.shards)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    if shard is not None:
        return _grade_shard(args, shard, limits, settings)
    try:
        autograde(args.course, limits, use_sandbox=not args.no_sandbox, jobs=args.jobs, settings=settings)
    except sandbox.SandboxUnavailable as error:
        print(f"autograde refused: {error}", file=sys.stderr)
        print(GRADE_ELSEWHERE, file=sys.stderr)
        return 2
    except (FileNotFoundError, judge.TableUnavailable, batch.CalibrationFailed) as error:
        print(f"autograde: {error}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------ cluster (shards, merge)


def _add_cluster_options(grade: argparse.ArgumentParser, commands: argparse._SubParsersAction) -> None:
    grade.add_argument("--shard", default=None, metavar="I/N",
                       help="grade only shard I of N (0 <= I < N) and write its results file; default: the Slurm "
                            "array task (SLURM_ARRAY_TASK_ID/COUNT) or the Kubernetes index (JOB_COMPLETION_INDEX)")
    grade.add_argument("--shards", type=int, default=None, metavar="N",
                       help="with JOB_COMPLETION_INDEX: the number of shards, the Job's completions (else "
                            "VITCOURSE_SHARDS)")
    grade.add_argument("--results", type=Path, default=None,
                       help=f"the shards' results folder (default COURSE/{cluster.RESULTS})")
    merge = commands.add_parser("merge", help="merge the N shards' results into grades.csv and the gradebook")
    merge.add_argument("--course", type=Path, required=True)
    merge.add_argument("--shards", type=int, required=True, metavar="N", help="how many shards graded the class")
    merge.add_argument("--results", type=Path, default=None,
                       help=f"the shards' results folder (default COURSE/{cluster.RESULTS})")


def _grade_shard(args: argparse.Namespace, shard: cluster.Shard, limits: sandbox.Limits, settings: Settings) -> int:
    try:
        cluster.grade_shard(args.course, shard, limits, use_sandbox=not args.no_sandbox, jobs=args.jobs,
                            settings=settings, results=args.results)
    except sandbox.SandboxUnavailable as error:
        print(f"autograde --shard {shard} refused: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, judge.TableUnavailable) as error:
        print(f"autograde --shard {shard}: {error}", file=sys.stderr)
        return 1
    return 0


def _merge(args: argparse.Namespace) -> int:
    try:
        cluster.merge(args.course, args.shards, args.results)
    except cluster.IncompleteClass as error:
        print(f"merge refused: {error}", file=sys.stderr)
        return 3
    except (FileNotFoundError, TypeError, ValueError) as error:  # ShardMismatch is a ValueError
        print(f"merge: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
