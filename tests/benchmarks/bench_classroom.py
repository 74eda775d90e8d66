"""A class's worth on the course hub: accounts, servers, submissions, collect, grading, feedback, each phase timed.

    python tests/benchmarks/bench_classroom.py [--students 60] [--jobs 2]

As root, with the course environment built (`make classroom-env`) and configurable-http-proxy installed: starts
the course hub (`vitcourse.hub.classroom`) with an instructor only and notebook 01 released; makes the student
accounts (system users, then the hub's accounts through its REST API); starts every student's JupyterLab at once;
each student fetches 01 and submits one kind of answer through the Assignments tab's endpoints (right, wrong,
empty, erroring, half right, a forbidden call, a faked check); the instructor collects, grades with the sandboxed
grader, exports nbgrader's gradebook and releases feedback; every student fetches feedback. It prints each phase's
time, every grade against the one expected for its kind (the script fails if any differs), and the memory of
each student's server and of the hub and its proxy. The accounts are removed at the end.

Elsewhere (not root, no proxy, no course environment) it says what is missing and exits 0, so `make bench` runs on.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "instructor"), str(ROOT / "src")]
NOTEBOOK = ROOT / "notebooks" / "01_patches_unfold.ipynb"
ASSIGNMENT = NOTEBOOK.stem
COURSE_ENV = Path(os.environ.get("VITSTEPS_COURSE_ENV", "/opt/vitsteps-course"))
COURSE_ID = "bench"
INSTRUCTOR = "vsbteacher"

WRONG_FAKED_CHECK = ("def image_to_patches(image, patch_size, stride):\n    return image.flatten(2)[:, :1]\n"
                     "check = lambda *args, **kwargs: print('image_to_patches: passed')")
FORBIDDEN = ("import torch.nn.functional as F\n\ndef image_to_patches(image, patch_size, stride):\n"
             "    return F.unfold(image, patch_size, stride=stride).transpose(1, 2)")
ERRORING = "def image_to_patches(image, patch_size, stride):\n    raise ValueError('not today')"
# kind: (answer for exercise 1, answer for exercise 2) (None: the released stub; "right"/"wrong": the source's,
# as is or off by one), and the points expected out of 3
KINDS = {
    "right": (("right", "right"), 3.0),
    "wrong": (("wrong", "wrong"), 0.0),
    "empty": ((None, None), 0.0),
    "erroring": ((ERRORING, None), 0.0),
    "half": (("right", None), 2.0),
    "forbidden call": ((FORBIDDEN, None), 0.0),
    "faked check": ((WRONG_FAKED_CHECK, None), 0.0),
}


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (it makes system users)"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy is not installed"
    if not (COURSE_ENV / "bin" / "jupyterhub-singleuser").is_file():
        return f"no course environment at {COURSE_ENV} (make classroom-env)"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "JupyterHub is not installed (pip install -e './instructor[hub]')"
    return None


def solutions() -> dict[str, str]:
    import nbformat

    found = {}
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            found[meta["grade_id"]] = "\n".join(line for line in cell.source.splitlines() if "### " not in line)
    return found


def answer_cells(kind: str, source: dict[str, str]) -> dict[str, str]:
    ids = list(source)  # ex01_image_to_patches, ex01_image2emb
    cells = {}
    for grade_id, answer in zip(ids, KINDS[kind][0], strict=True):
        if answer == "right":
            cells[grade_id] = source[grade_id]
        elif answer == "wrong":
            cells[grade_id] = source[grade_id].replace("return ", "return 1 + ")
        elif answer is not None:
            cells[grade_id] = answer
    return cells


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2, help="notebooks graded at once")
    args = parser.parse_args()
    problem = missing()
    if problem:
        print(f"bench_classroom skipped: {problem}")
        return 0
    from vitcourse.hub import classroom, rest

    names = [f"vsb{index:02d}" for index in range(1, args.students + 1)]
    kinds = {name: list(KINDS)[index % len(KINDS)] for index, name in enumerate(names)}
    source = solutions()
    times: dict[str, float] = {}
    classroom.remove_accounts([INSTRUCTOR, *names])
    base = Path(tempfile.mkdtemp(prefix="vitsteps-bench-", dir="/tmp"))
    os.chmod(base, 0o755)
    mark = time.monotonic()
    room = classroom.start([NOTEBOOK], students=[], port=classroom.free_port(), course_id=COURSE_ID,
                           state=base / "state", course_env=COURSE_ENV, exchange=base / "exchange",
                           instructor=INSTRUCTOR, quiet=True)
    times["hub started, 01 released"] = time.monotonic() - mark
    try:
        hub_pid = classroom.running(room.state)
        proxy_pid = int((room.state / "proxy.pid").read_text())
        idle = rss(hub_pid) + rss(proxy_pid)
        mark = time.monotonic()
        for name in names:
            classroom._ensure_user(name)
        room = dataclasses.replace(room, students=tuple(names))
        for name in names:
            classroom._user_config(room, name)
        rest.add_users(room, names)
        times["accounts (useradd + hub REST API)"] = time.monotonic() - mark
        mark = time.monotonic()
        rest.start_servers(room, [INSTRUCTOR, *names], timeout=900)
        times["servers started (all at once)"] = time.monotonic() - mark
        tokens = {name: rest.user_token(room, name) for name in names}
        servers = rest.server_memory(room, names)
        busy = rss(hub_pid) + rss(proxy_pid)

        def hand_in(name: str) -> None:
            body = {"assignment_id": ASSIGNMENT, "course_id": COURSE_ID}
            rest.request(room, "POST", f"/user/{name}/assignments/fetch", tokens[name], body)
            path = f"{ASSIGNMENT}/{NOTEBOOK.name}"
            notebook = rest.read_file(room, name, tokens[name], path)["content"]
            cells = answer_cells(kinds[name], source)
            for cell in notebook["cells"]:
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if grade_id in cells:
                    cell["source"] = cells[grade_id]
            rest.write_notebook(room, name, tokens[name], path, notebook)
            answer = rest.request(room, "POST", f"/user/{name}/assignments/submit", tokens[name], body)
            if answer.get("success") is False:
                raise RuntimeError(f"{name}'s submission failed: {answer}")

        mark = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(hand_in, names))
        times["fetch + answer + submit (8 at once)"] = time.monotonic() - mark
        env = room.course_env / "bin"
        instructor_started = time.monotonic()
        for label, argv in (("collect", [env / "nbgrader", "collect", ASSIGNMENT]),
                            (f"grade (sandboxed, {args.jobs} at once)",
                             [env / "python", "-m", "vitcourse.grading", "autograde", "--course", room.course(),
                              "--jobs", str(args.jobs)]),
                            ("nbgrader export", [env / "nbgrader", "export"]),
                            ("release feedback", [env / "nbgrader", "release_feedback", ASSIGNMENT])):
            mark = time.monotonic()
            classroom.as_user(room, INSTRUCTOR, [str(a) for a in argv], cwd=room.course())
            times[label] = time.monotonic() - mark

        def fetch_feedback(name: str) -> bool:
            rest.request(room, "POST", f"/user/{name}/assignments/fetch_feedback", tokens[name],
                         {"assignment_id": ASSIGNMENT, "course_id": COURSE_ID})
            folder = rest.request(room, "GET", f"/user/{name}/api/contents/{ASSIGNMENT}/feedback", tokens[name])
            return len(folder["content"]) == 1

        mark = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            fetched = sum(pool.map(fetch_feedback, names))
        times["fetch feedback (8 at once)"] = time.monotonic() - mark
        times["collect to every student's feedback"] = time.monotonic() - instructor_started
        exported = {row["student_id"]: row for row in
                    csv.DictReader(io.StringIO((room.course() / "nbgrader_grades.csv").read_text()))}
    finally:
        mark = time.monotonic()
        killed = classroom.stop(room.state, quiet=True)
        times["hub stopped"] = time.monotonic() - mark
        classroom.remove_accounts([INSTRUCTOR, *names])
        shutil.rmtree(base, ignore_errors=True)

    print(f"{args.students} students, one notebook each (01_patches_unfold, 3 points), {os.cpu_count()} CPUs")
    for label, seconds in times.items():
        print(f"  {label:<40} {seconds:7.1f} s")
    wrong = []
    by_kind: dict[str, list[str]] = {}
    for name in names:
        expected, got = KINDS[kinds[name]][1], float(exported[name]["score"])
        by_kind.setdefault(kinds[name], []).append(f"{got:g}")
        if got != expected:
            wrong.append(f"{name} ({kinds[name]}): {got:g}, expected {expected:g}")
    for kind, scores in by_kind.items():
        print(f"  {kind:<16} expected {KINDS[kind][1]:g}/3, got {', '.join(sorted(set(scores)))} "
              f"({len(scores)} students)")
    print(f"  grades as expected: {len(names) - len(wrong)}/{len(names)}; feedback fetched: {fetched}/{len(names)}")
    mean = sum(servers.values()) / max(1, len(servers))
    print(f"  memory: each student's JupyterLab {mean / 2**20:.0f} MiB (mean of {len(servers)}); hub + proxy "
          f"{idle / 2**20:.0f} MiB idle, {busy / 2**20:.0f} MiB with {len(names)} servers "
          f"({(busy - idle) / max(1, len(names)) / 2**20:.2f} MiB more per active user)")
    print(f"  processes left after stop: {len(killed)}")
    for line in wrong:
        print(f"  NOT AS EXPECTED: {line}")
    return 1 if wrong or fetched != len(names) or killed else 0


if __name__ == "__main__":
    sys.exit(main())
