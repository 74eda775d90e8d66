"""Submissions a second graded as 1 shard and as 2 shards at once on this machine, each shard a process of its own
as a batch job runs it (`autograde --shard I/N --jobs 1`: one core a shard), then the merge.

The class is notebook 01 handed in by `--submissions` students (default 8): half correct, half the student
version. Both runs grade copies of the same course folder, in turns (1, 2, 2, 1 for `--repeats 2`: the other
engineers' load on these shared cores drifts); the script prints each mean wall time
(from the first shard's start to the merge's end, the interpreter's start and the warm sandbox included), the
submissions a second, the speed-up of 2 shards over 1, whether the grades agree, the load average, and the wall
time projected for 60, 1,000 and 10,000 submissions on 2 to 256 cores. The projection splits the 1-shard time into
a start that every shard pays (the interpreter, the warm sandbox, the merge: measured as a 1-shard run of one
submission, less one submission's share) and a time per submission per core, and assumes one shard a core whose
tasks share nothing but the course folder: wall = start + ceil(submissions / cores) x time per submission.

    python tests/benchmarks/bench_cluster.py [--submissions 8] [--repeats 2] [--notebook notebooks/01_...ipynb]
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from vitcourse.confine import sandbox
from vitcourse.course.release import release, student_version
from vitcourse.judge.cells import is_solution

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "tests" / "fixtures" / "exercises.py"


def _class(course: Path, notebook: Path, count: int) -> None:
    release(course, [notebook], str(TABLE))
    source = nbformat.read(notebook, as_version=4)
    student = student_version(source)
    solutions = {cell.metadata["nbgrader"]["grade_id"]: "\n".join(
        line for line in cell.source.splitlines() if "SOLUTION" not in line)
        for cell in source.cells if is_solution(cell)}
    for index in range(count):
        handed_in = copy.deepcopy(student)
        if index % 2 == 0:
            for cell in handed_in.cells:
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if grade_id in solutions:
                    cell.source = solutions[grade_id]
        folder = course / "submitted" / f"student{index:03d}" / notebook.stem
        folder.mkdir(parents=True)
        nbformat.write(handed_in, folder / notebook.name)


def _graded(course: Path, shards: int, options: list[str]) -> float:
    """Wall seconds: `shards` shard processes at once, then the merge."""
    started = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, "-m", "vitcourse.grading", "autograde", "--course", str(course),
                                 "--jobs", "1", "--shard", f"{index}/{shards}", *options],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for index in range(shards)]
    for worker in workers:
        _, errors = worker.communicate(timeout=3600)
        if worker.returncode != 0:
            raise SystemExit(f"a shard failed ({worker.returncode}): {errors[-1000:]}")
    merged = subprocess.run([sys.executable, "-m", "vitcourse.grading", "merge", "--course", str(course), "--shards",
                             str(shards)], capture_output=True, text=True, timeout=600)
    if merged.returncode != 0:
        raise SystemExit(f"the merge failed: {merged.stderr[-1000:]}")
    return time.perf_counter() - started


def _rows(course: Path) -> list[dict[str, str]]:
    with (course / "grades.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _hours(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of both (alternating order)")
    parser.add_argument("--notebook", type=Path, default=REPO / "notebooks" / "01_patches_unfold.ipynb")
    args = parser.parse_args()
    options = ["--exercises", str(TABLE)]
    try:
        probe = sandbox.Sandbox(sandbox.Limits())
        probe.start()
        probe.close()
        mode = "sandboxed (bubblewrap)"
    except sandbox.SandboxUnavailable as error:
        options.append("--no-sandbox")
        mode = f"WITHOUT the sandbox ({str(error)[:120]})"
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        _class(root / "one", args.notebook, args.submissions)
        shutil.copytree(root / "one", root / "two", symlinks=True)
        _class(root / "single", args.notebook, 1)
        load = os.getloadavg()
        seconds: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(args.repeats):
            for shards in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                seconds[shards].append(_graded(root / ("one" if shards == 1 else "two"), shards, options))
        one, two = (sum(seconds[n]) / len(seconds[n]) for n in (1, 2))
        alone = _graded(root / "single", 1, options)  # the start plus one submission
        each = max((one - alone) / (args.submissions - 1), 1e-3)
        start = max(alone - each, 0.0)
        agree = _rows(root / "one") == _rows(root / "two")
        print(f"{args.submissions} submissions of {args.notebook.name}, {mode}, {os.cpu_count()} CPUs, load "
              f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
        rate_one, rate_two = args.submissions / one, args.submissions / two
        print(f"1 shard : {one:6.1f} s (runs {', '.join(f'{v:.1f}' for v in seconds[1])}), "
              f"{rate_one:.3f} submissions/s")
        print(f"2 shards: {two:6.1f} s (runs {', '.join(f'{v:.1f}' for v in seconds[2])}), "
              f"{rate_two:.3f} submissions/s, {one / two:.2f}x the 1-shard rate")
        print(f"grades of 1 and 2 shards agree: {agree}")
        print(f"a shard's start {start:.1f} s (a 1-submission class: {alone:.1f} s), then {each:.2f} s a submission "
              f"a core ({1 / each:.3f} submissions/s a core)")
        print("projected wall time, one shard a core (start + ceil(submissions / cores) x time a submission):")
        print("| submissions | 2 cores | 16 cores | 64 cores | 256 cores |")
        print("|---:|---:|---:|---:|---:|")
        for count in (60, 1000, 10000):
            cells = " | ".join(_hours(start + math.ceil(count / cores) * each) for cores in (2, 16, 64, 256))
            print(f"| {count:,} | {cells} |")
        return 0 if agree else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
