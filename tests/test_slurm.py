"""Grading and training runs on a real Slurm: a single node started for the test (`slurm_cluster`), a 4-task
`sbatch --array` with the merge as an `afterok` job, every grade compared with a one-machine run; short training runs
as an array, collected into the same file the local workers write.

Root and Debian's `slurm-wlm` and `munge` are needed; elsewhere the tests skip with the reason, unless
`VITSTEPS_REQUIRE_SLURM=1` (CI, `.ci/run`) makes that a failure. About 40 s on 2 cores for the grading test.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REQUIRE_SLURM = os.environ.get("VITSTEPS_REQUIRE_SLURM") == "1"
REQUIRE_SANDBOX = os.environ.get("VITSTEPS_REQUIRE_SANDBOX") == "1"
if not (REQUIRE_SLURM or REQUIRE_SANDBOX):
    pytest.importorskip("nbgrader", reason="the instructor tools (vitcourse, nbgrader) are not installed")

import classroom  # noqa: E402
import slurm_cluster  # noqa: E402
from vitcourse import grading  # noqa: E402
from vitcourse.cluster import slurm  # noqa: E402
from vitcourse.confine import sandbox  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARDS, STUDENTS = 4, 40
LIMITS = ["--cell-timeout", "5", "--notebook-timeout", "60", "--memory-mb", "512"]


def _sandbox_works() -> bool:
    """Whether bubblewrap runs submissions here (CI: it must)."""
    if REQUIRE_SANDBOX:
        return True
    try:
        probe = sandbox.Sandbox(sandbox.Limits())
        probe.start()
        probe.close()
        return True
    except sandbox.SandboxUnavailable as error:
        print(f"note: grading without the sandbox in this test ({error})", file=sys.stderr)
        return False


@pytest.fixture(scope="module", autouse=True)
def private_temporary_folder(tmp_path_factory):
    """The graders here keep their temporary folders out of the machine's /tmp, where the grading tests, running
    beside these, look for anything a grader left behind."""
    folder = tmp_path_factory.mktemp("temporary")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))
        patch.setenv("TMPDIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.why_not()
    if reason:
        if REQUIRE_SLURM:
            pytest.fail(f"VITSTEPS_REQUIRE_SLURM=1 but {reason}")
        print(f"skipping the Slurm tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    with slurm_cluster.single_node_slurm(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def _gradebook_scores(course: Path) -> list[tuple]:
    with sqlite3.connect(course / "gradebook.db") as db:
        return db.execute(
            "SELECT student.id, assignment.name, notebook.name, base_cell.name, grade.auto_score "
            "FROM grade JOIN base_cell ON grade.cell_id = base_cell.id "
            "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
            "JOIN notebook ON submitted_notebook.notebook_id = notebook.id "
            "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
            "JOIN assignment ON submitted_assignment.assignment_id = assignment.id "
            "JOIN student ON submitted_assignment.student_id = student.id ORDER BY 1, 2, 3, 4").fetchall()


def test_a_class_graded_as_a_slurm_array_gets_the_one_machine_grades(cluster, tmp_path):
    course = classroom.make_class(tmp_path / "course", STUDENTS, hang=1)
    alone = tmp_path / "alone"
    shutil.copytree(course, alone, symlinks=True)
    use_sandbox = _sandbox_works()
    options = ["--exercises", classroom.TABLE, *LIMITS, *([] if use_sandbox else ["--no-sandbox"])]
    assert grading.main(["autograde", "--course", str(alone), "--jobs", "2", *options]) == 0

    array, merge = slurm.submit(course, SHARDS, ["--cpus-per-task=1", "--mem=1G", f"--output={tmp_path}/%x-%A_%a.out"],
                                options, cwd=tmp_path, env=cluster.env)
    cluster.wait([array, merge], timeout=240)
    outputs = "\n".join(path.read_text(errors="replace")[-1500:] for path in sorted(tmp_path.glob("*.out")))
    tasks = cluster.states(array)
    assert len(tasks) == SHARDS and all(state == ("COMPLETED", "0:0") for state in tasks), (tasks, outputs)
    assert cluster.states(merge) == [("COMPLETED", "0:0")], outputs
    assert sorted(path.name for path in (course / "shards").iterdir()) == [
        f"shard-{index:05d}-of-{SHARDS:05d}.json" for index in range(SHARDS)]
    records = [json.loads(path.read_text()) for path in sorted((course / "shards").iterdir())]
    assert sum(1 for record in records for row in record["rows"] if row["submitted"]) == STUDENTS
    assert all(record["rows"] for record in records)  # 40 submissions over 4 shards: none is empty

    merged, single = classroom.rows(course), classroom.rows(alone)
    assert len(single) == STUDENTS + 3  # and a row for each refused entry
    assert merged == single
    assert _gradebook_scores(course) == _gradebook_scores(alone) and len(_gradebook_scores(course)) == 3 * STUDENTS
    hung = next(row for row in merged if row["student"] == "s0000")
    assert hung["exercises"].startswith("exmini_count_test=2/2 exmini_head_test=0/1") and hung["reason"]
    for row in (row for row in merged if row["notebook"]):  # every graded notebook's feedback page, whole
        page = course / "feedback" / row["student"] / "grading_mini" / "grading_mini.html"
        assert page.read_text(encoding="utf-8").rstrip().endswith("</html>"), page


# ------------------------------------------------------------------------------------------ training runs

TOOL = REPO / "tools" / "mnist_results.py"
SHORT_RUNS = [  # 100 images, 2 epochs of 2 steps: seconds each
    {"name": "vit_tiny_s0", "model": "vit", "seed": 0, "epochs": 2, "warmup_epochs": 1, "n_train": 100, "test": True},
    {"name": "cnn_tiny_s1", "model": "cnn", "seed": 1, "epochs": 2, "warmup_epochs": 1, "n_train": 100},
    {"name": "vit_patch7_tiny_s2", "model": "vit", "seed": 2, "epochs": 2, "warmup_epochs": 1, "n_train": 100,
     "changes": [["patch_size", 7]]},
]
MEASURED = ("train_seconds", "eval_seconds", "seconds_per_epoch", "cpu_seconds", "load_before", "load_after")


def _without_measurements(path: Path) -> dict:
    collected = json.loads(path.read_text())
    for result in collected["runs"].values():
        for name in MEASURED:
            assert name in result
            del result[name]
    return collected


def test_training_runs_as_a_slurm_array_collect_into_the_file_local_workers_write(cluster, tmp_path):
    spec = tmp_path / "runs.json"
    spec.write_text(json.dumps(SHORT_RUNS))
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    local = subprocess.run([sys.executable, str(TOOL), "write", "--runs", str(spec), "--work", str(tmp_path / "local"),
                            "--threads", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert local.returncode == 0, local.stderr
    submitted = subprocess.run([sys.executable, str(TOOL), "slurm", "--runs", str(spec), "--work",
                                str(tmp_path / "slurm"), "--threads", "1",
                                "--sbatch", f"--mem=1G --output={tmp_path}/%x-%A_%a.out"],
                               capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    jobs = submitted.stdout.strip().splitlines()[-1].removeprefix("jobs: ").split(",")
    array, collector = jobs
    cluster.wait(jobs, timeout=300)
    outputs = "\n".join(path.read_text(errors="replace")[-1500:] for path in sorted(tmp_path.glob("*.out")))
    assert cluster.states(array) == [("COMPLETED", "0:0")] * len(SHORT_RUNS), outputs
    assert cluster.states(collector) == [("COMPLETED", "0:0")], outputs
    slurm_runs = _without_measurements(tmp_path / "slurm" / "runs.json")
    assert list(slurm_runs["runs"]) == [run["name"] for run in SHORT_RUNS]
    assert slurm_runs == _without_measurements(tmp_path / "local" / "runs.json")
    assert slurm_runs["runs"]["vit_tiny_s0"]["steps"] == 4 and "test" in slurm_runs["runs"]["vit_tiny_s0"]
    assert not list((tmp_path / "slurm").glob(".*.tmp"))
