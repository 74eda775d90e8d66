"""What the grader's self-bounding guards cost, each measured side by side with what it replaced.

* reading a submitted notebook: `read_untrusted` + the bounded parsing process against `nbformat.read`,
  on each notebook of the series; reading a small file (`timestamp.txt`) with and without the link checks;
* decoding a reply: `wire.decode` (which first checks the whole tree and its decoded size) against building
  the same value without that check;
* the calibration at the start of autograde: grading the solution of notebook 01 once, against grading one
  correct submission (the calibration is that, once per assignment per run).

    python tests/benchmarks/bench_bounds.py [--repeat 5] [--no-sandbox]
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np
from vitcourse.confine import files, sandbox
from vitcourse.course import batch
from vitcourse.course.release import release
from vitcourse.course.submissions import Submission, course_notebooks, grade_submission
from vitcourse.inside import wire
from vitcourse.judge import verdict as judge
from vitcourse.judge.grade import Job, Settings

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIXTURE_TABLE = REPO / "tests" / "fixtures" / "exercises.py"


def _best(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def _parse(repeat: int) -> None:
    bounded, plain = [], []
    for path in NOTEBOOKS:
        bounded.append(_best(lambda p=path: files.load_notebook(files.read_untrusted(p, 20 * files.MIB)), repeat))
        plain.append(_best(lambda p=path: nbformat.read(p, as_version=4), repeat))
    print(f"reading a notebook ({len(NOTEBOOKS)} of the series, best of {repeat}): bounded process "
          f"{1000 * statistics.mean(bounded):.0f} ms (largest {1000 * max(bounded):.0f} ms), nbformat.read in the "
          f"grader {1000 * statistics.mean(plain):.0f} ms; the guard adds "
          f"{1000 * (statistics.mean(bounded) - statistics.mean(plain)):.0f} ms a notebook")


def _small_files(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as folder:
        path = Path(folder) / "timestamp.txt"
        path.write_text("2025-01-15 10:00:00.000000 UTC")
        guarded = _best(lambda: files.read_untrusted(path, 4096), repeat * 200)
        plain = _best(path.read_bytes, repeat * 200)
    print(f"reading timestamp.txt: read_untrusted {1e6 * guarded:.0f} us, Path.read_bytes {1e6 * plain:.0f} us")


def _wire(repeat: int) -> None:
    import torch

    arrays = {f"a{index}": np.random.default_rng(index).standard_normal((64, 197, 48)).astype(np.float32)
              for index in range(4)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    tree = {"t": "tuple", "items": [{"t": "tensor", "a": key, "grad": False} for key in arrays]}
    checked = _best(lambda: wire.decode(tree, blob), repeat * 20)
    unchecked = _best(lambda: tuple(torch.from_numpy(a.copy()) for a in wire.load_arrays(blob).values()), repeat * 20)
    print(f"decoding a reply of 4 tensors [64, 197, 48] ({len(blob) / 2 ** 20:.1f} MiB): checked "
          f"{1000 * checked:.2f} ms, built without the check {1000 * unchecked:.2f} ms "
          f"(ratio {checked / unchecked:.2f})")


def _calibration(use_sandbox: bool) -> None:
    notebook = REPO / "notebooks" / "01_patches_unfold.ipynb"
    exercises = "vitsteps.teach.checks" if importlib.util.find_spec("vitsteps.teach") else str(FIXTURE_TABLE)
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as folder:
        course = Path(folder) / "course"
        release(course, [notebook], exercises)
        settings = Settings(exercises=exercises)
        table = judge.load_table(exercises)
        source, _ = course_notebooks(course, notebook.stem, notebook.name)
        preload = sandbox.imports_of(cell.source for cell in source.cells if cell.cell_type == "code")
        target = course / "submitted" / "student00" / notebook.stem
        target.mkdir(parents=True)
        shutil.copyfile(course / "source" / notebook.stem / notebook.name, target / notebook.name)
        with sandbox.Sandbox(sandbox.Limits(), sandboxed=use_sandbox, preload=preload, watch=table.watched()) as warm:
            job = Job(warm, table, settings, secrets.token_bytes(32))
            batch.calibrate(course, notebook.stem, notebook.name, job)  # warm-up: first fork, first imports
            start = time.perf_counter()
            seconds = batch.calibrate(course, notebook.stem, notebook.name, job)
            calibration = time.perf_counter() - start
            start = time.perf_counter()
            grade = grade_submission(course, Submission("student00", notebook.stem, target / notebook.name,
                                                        notebook.name), job)
            submission = time.perf_counter() - start
    print(f"calibration of {notebook.name} ({'sandboxed' if use_sandbox else 'unsandboxed'}): {calibration:.2f} s "
          f"(the solution's own time {seconds:.2f} s), one correct submission {submission:.2f} s "
          f"({grade.points:g}/{grade.max_points:g}); once per assignment per run, so with 30 submissions it adds "
          f"{100 * calibration / (30 * submission):.0f}% to the grading time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-sandbox", action="store_true", help="time the calibration without bubblewrap")
    args = parser.parse_args()
    _parse(args.repeat)
    _small_files(args.repeat)
    _wire(args.repeat)
    if not args.no_sandbox and shutil.which("bwrap") is None:
        sys.exit("bubblewrap is not installed (apt-get install -y bubblewrap); pass --no-sandbox to time the "
                 "calibration without it.")
    _calibration(not args.no_sandbox)


if __name__ == "__main__":
    main()
