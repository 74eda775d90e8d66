"""Throughput of sandboxed autograding: 30 submissions of one notebook, graded 2 at a time on 2 cores.

The submissions are made from the notebook itself: a third correct, a third with the last exercise left
undone, a third the untouched student version (stubs). `make student`'s code writes the course folder, then
`autograde` grades it exactly as `make autograde` does (bubblewrap sandbox, default limits) and the
script prints the wall time, the time per submission and the rate per hour.

A second, smaller measurement runs side by side, in interleaved rounds: one kernel started and `import torch`
run inside the sandbox, and the same without it, so the ratio is the cost of the sandbox itself.

    python tests/benchmarks/bench_grading.py [--notebook notebooks/01_patches_unfold.ipynb] [--submissions 30]
                                             [--jobs 2] [--rounds 5]
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from vitcourse import grading, sandbox

REPO = Path(__file__).resolve().parents[2]


def _submissions(source: nbformat.NotebookNode, count: int) -> list[nbformat.NotebookNode]:
    student = grading.student_version(source)
    solutions = {cell.metadata["nbgrader"]["grade_id"]: "\n".join(
        line for line in cell.source.splitlines()
        if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
        for cell in source.cells if grading._is_solution(cell)}
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


def _kernel_start(use_sandbox: bool) -> float:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
    start = time.perf_counter()
    run = sandbox.execute(notebook, sandbox.Limits(), sandbox=use_sandbox)
    elapsed = time.perf_counter() - start
    if run.status.get(0) != "ok":
        sys.exit(f"the kernel did not run (sandbox={use_sandbox}): {run.stopped}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=REPO / "notebooks" / "01_patches_unfold.ipynb")
    parser.add_argument("--submissions", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        sys.exit("bubblewrap is not installed (apt-get install -y bubblewrap); the benchmark measures the sandbox.")
    cores = sorted(os.sched_getaffinity(0))[: args.jobs]
    os.sched_setaffinity(0, cores)  # kernels inherit it: the grading runs on these cores only
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    print(f"sandbox cost: kernel start + `import torch`, {args.rounds} interleaved rounds")
    timings: dict[bool, list[float]] = {True: [], False: []}
    for round_index in range(args.rounds):
        for use_sandbox in ((True, False) if round_index % 2 == 0 else (False, True)):
            timings[use_sandbox].append(_kernel_start(use_sandbox))
    ratios = [a / b for a, b in zip(timings[True], timings[False], strict=True)]
    print(f"  sandboxed   median {statistics.median(timings[True]):.2f} s  "
          f"(min {min(timings[True]):.2f}, max {max(timings[True]):.2f})")
    print(f"  unconfined  median {statistics.median(timings[False]):.2f} s  "
          f"(min {min(timings[False]):.2f}, max {max(timings[False]):.2f})")
    print(f"  ratio sandboxed / unconfined: median of rounds {statistics.median(ratios):.2f}, "
          f"best rounds {min(timings[True]) / min(timings[False]):.2f}")

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        course = Path(folder) / "course"
        grading.release(course, [args.notebook])
        source = nbformat.read(args.notebook, as_version=4)
        for index, notebook in enumerate(_submissions(source, args.submissions)):
            target = course / "submitted" / f"student{index:02d}" / args.notebook.stem
            target.mkdir(parents=True)
            nbformat.write(notebook, target / args.notebook.name)
        print(f"\ngrading {args.submissions} submissions of {args.notebook.name} with {args.jobs} jobs "
              f"on {len(cores)} core{'s' if len(cores) != 1 else ''} (cores {cores})")
        start = time.perf_counter()
        grades = grading.autograde(course, sandbox.Limits(), jobs=args.jobs, quiet=True)
        elapsed = time.perf_counter() - start
    points = sorted({grade.points for grade in grades})
    failed = [grade for grade in grades if any(r.startswith(("grading failed", "timed out", "the kernel"))
                                                for r in grade.reasons)]
    print(f"  wall time {elapsed:.1f} s, {elapsed / args.submissions:.2f} s per submission, "
          f"{3600 * args.submissions / elapsed:.0f} submissions per hour")
    print(f"  distinct scores {points}; submissions with grading problems: {len(failed)}")
    per_job = elapsed * args.jobs / args.submissions
    print(f"  per submission vs one sandboxed kernel start: {per_job / statistics.median(timings[True]):.1f}x "
          f"(the notebook's own work and the feedback page make the rest)")


if __name__ == "__main__":
    main()
