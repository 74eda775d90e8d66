"""Shards and their merge (`vitcourse.cluster`): which submissions a shard grades, the file it writes, the merge's
refusals, and the faults a batch job meets (killed midway, a hanging submission, merged twice). The class here is
graded without the sandbox (the grading tests cover it; the Slurm test grades with it), about 25 s in all."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import nbformat
import pytest

REQUIRE_SANDBOX = os.environ.get("VITSTEPS_REQUIRE_SANDBOX") == "1"
if not REQUIRE_SANDBOX:
    pytest.importorskip("nbgrader", reason="the instructor tools (vitcourse, nbgrader) are not installed")

import classroom  # noqa: E402
from helpers import assert_refused  # noqa: E402
from vitcourse import grading  # noqa: E402
from vitcourse.cluster import shards as cluster  # noqa: E402
from vitcourse.cluster import slurm  # noqa: E402
from vitcourse.confine import sandbox  # noqa: E402
from vitcourse.judge.grade import Settings  # noqa: E402

QUICK = sandbox.Limits(cell_timeout=3, notebook_timeout=30, memory_mb=512)
SETTINGS = Settings(exercises=classroom.TABLE)
CLI = ["--no-sandbox", "--exercises", classroom.TABLE, "--cell-timeout", "3", "--notebook-timeout", "30"]


@pytest.fixture(scope="module", autouse=True)
def private_temporary_folder(tmp_path_factory):
    """The graders here (and the processes they start) keep their temporary folders out of the machine's /tmp,
    where the grading tests, running beside these, look for anything a grader left behind."""
    folder = tmp_path_factory.mktemp("temporary")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))
        patch.setenv("TMPDIR", str(folder))
        yield folder


def _shard(course: Path, shard: cluster.Shard, settings: Settings = SETTINGS) -> Path:
    return cluster.grade_shard(course, shard, QUICK, use_sandbox=False, jobs=2, quiet=True, settings=settings)


def _dump(course: Path) -> list[str]:
    with sqlite3.connect(course / "gradebook.db") as db:
        return list(db.iterdump())


# ------------------------------------------------------------------------------------------ shards


def test_a_submission_belongs_to_one_shard_fixed_by_n_alone():
    keys = [(f"s{number}", assignment) for number in range(400) for assignment in ("01_patches", "02_conv")]
    for count in (1, 2, 3, 7):
        owners = [[index for index in range(count) if cluster.Shard(index, count).owns(*key)] for key in keys]
        assert all(len(owner) == 1 for owner in owners)
        assert [cluster.shard_of(*key, count) for key in reversed(keys)] == [o[0] for o in reversed(owners)]
        sizes = Counter(owner[0] for owner in owners)
        assert len(sizes) == count and min(sizes.values()) > 0.7 * len(keys) / count  # roughly even
    assert cluster.shard_of("alice", "01_patches", 4) != cluster.shard_of("alice", "02_conv", 4) or \
        cluster.shard_of("bob", "01_patches", 4) != cluster.shard_of("alice", "01_patches", 4)


def test_the_shard_comes_from_the_flag_the_slurm_array_or_the_kubernetes_index():
    assert cluster.resolve_shard("2/4", env={}) == cluster.Shard(2, 4)
    assert cluster.resolve_shard(None, env={}) is None
    slurm_env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    assert cluster.resolve_shard(None, env=slurm_env) == cluster.Shard(3, 4)
    assert cluster.resolve_shard(None, env={**slurm_env, "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_ID": "4"}) \
        == cluster.Shard(3, 4)  # --array=1-4
    assert cluster.resolve_shard("0/2", env=slurm_env) == cluster.Shard(0, 2)  # the flag wins
    assert cluster.resolve_shard(None, 5, env={"JOB_COMPLETION_INDEX": "4"}) == cluster.Shard(4, 5)
    assert cluster.resolve_shard(None, env={"JOB_COMPLETION_INDEX": "1", "VITCOURSE_SHARDS": "3"}) == \
        cluster.Shard(1, 3)


@pytest.mark.parametrize(("call", "words"), [
    (lambda: cluster.parse_shard("4/4"), r"shard index 4 is out of range for 4 shard\(s\)"),
    (lambda: cluster.parse_shard("-1/4"), r"shard index -1 is out of range"),
    (lambda: cluster.parse_shard("0/0"), r"number of shards must be from 1 to .*got 0"),
    (lambda: cluster.parse_shard("two of four"), r"shard must be I/N, got 'two of four'"),
    (lambda: cluster.resolve_shard(None, env={"JOB_COMPLETION_INDEX": "1"}), r"JOB_COMPLETION_INDEX is set .* not "
                                                                              r"the number of shards"),
    (lambda: cluster.resolve_shard(None, 4, env={}), r"--shards 4 needs a shard index"),
    (lambda: cluster.resolve_shard(None, env={"SLURM_ARRAY_TASK_ID": "1"}), r"SLURM_ARRAY_TASK_COUNT is not"),
    (lambda: cluster.resolve_shard(None, env={"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}),
     r"SLURM_ARRAY_TASK_ID='x' is not a whole number"),
])
def test_a_bad_shard_is_named_with_the_fix(call, words):
    assert_refused(call, ValueError, words)


def test_the_command_line_refuses_a_bad_shard_and_a_merge_of_no_shards(tmp_path, capsys):
    course = classroom.make_class(tmp_path / "course", 2, refused=False)
    with pytest.raises(SystemExit):
        grading.main(["autograde", "--course", str(course), *CLI, "--shard", "3/3"])
    assert "shard index 3 is out of range for 3 shard(s)" in capsys.readouterr().err
    assert grading.main(["merge", "--course", str(course), "--shards", "0"]) == 1
    assert "shards must be at least 1" in capsys.readouterr().err
    assert_refused(lambda: cluster.merge(course, 0), ValueError, r"shards must be at least 1.*got 0")
    assert_refused(lambda: cluster.Shard(0, 0), ValueError, r"number of shards must be from 1")


# ------------------------------------------------------------------------------------------ shards and merge


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """One class graded on one machine and, in a copy, as 2 shards through the command line, then merged."""
    root = tmp_path_factory.mktemp("sharded")
    alone = classroom.make_class(root / "alone", 10, hang=1)
    course = root / "course"
    shutil.copytree(alone, course, symlinks=True)
    grading.autograde(alone, QUICK, use_sandbox=False, jobs=2, quiet=True, settings=SETTINGS)
    for index in range(2):
        assert grading.main(["autograde", "--course", str(course), *CLI, "--shard", f"{index}/2"]) == 0
    assert grading.main(["merge", "--course", str(course), "--shards", "2"]) == 0
    return {"alone": alone, "course": course}


def test_merged_shards_give_every_submission_its_one_machine_grade(sharded):
    alone, course = sharded["alone"], sharded["course"]
    single, merged = classroom.rows(alone), classroom.rows(course)
    assert len(single) == 10 + 3 and merged == single
    assert {row["points"] for row in single} >= {"5", "3", "0"}  # right, partly wrong and unfinished work
    for row in (r for r in merged if r["notebook"]):
        graded = course / "autograded" / row["student"] / "grading_mini" / "grading_mini.ipynb"
        assert nbformat.read(graded, as_version=4).cells  # whole notebooks
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{alone / 'gradebook.db'}") as one, Gradebook(f"sqlite:///{course / 'gradebook.db'}") \
            as both:
        for row in (r for r in single if r["notebook"]):
            assert both.find_submission_notebook("grading_mini", "grading_mini", row["student"]).score == \
                one.find_submission_notebook("grading_mini", "grading_mini", row["student"]).score == \
                float(row["points"])


def test_each_shard_file_says_what_it_was_graded_for(sharded):
    course = sharded["course"]
    files = sorted((course / "shards").iterdir())
    assert [path.name for path in files] == [f"shard-0000{i}-of-00002.json" for i in range(2)]
    students = []
    for index, path in enumerate(files):
        record = json.loads(path.read_text())
        assert (record["shard"], record["shards"], record["status"]) == (index, 2, "done")
        assert record["course_id"] == "vitsteps" and set(record["assignments"]) == {"grading_mini"}
        assert record["vitcourse"] == cluster.version() and record["settings"]["exercises"] == classroom.TABLE
        for row in record["rows"]:
            assert cluster.shard_of(row["grade"]["student"], row["grade"]["assignment"], 2) == index
            students.append(row["grade"]["student"])
    assert sorted(students) == sorted(row["student"] for row in classroom.rows(sharded["alone"]))


def test_a_hanging_submission_is_stopped_by_its_limit_and_gets_a_row(sharded):
    hung = next(row for row in classroom.rows(sharded["course"]) if row["student"] == "s0000")
    assert "timed out" in hung["reason"] and "ran past 3 s" in hung["reason"]
    assert hung["exercises"] == "exmini_count_test=2/2 exmini_head_test=0/1 exmini_patches_test=2/2"


def test_merging_the_same_shards_twice_gives_the_same_gradebook(sharded, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(sharded["course"], course, symlinks=True)
    first, csv_first = _dump(course), (course / "grades.csv").read_bytes()
    cluster.merge(course, 2, quiet=True)
    assert _dump(course) == first and (course / "grades.csv").read_bytes() == csv_first
    assert len([line for line in first if line.startswith('INSERT INTO "grade"')]) == 3 * 10


def _copy(sharded, tmp_path) -> Path:
    course = tmp_path / "course"
    shutil.copytree(sharded["course"], course, symlinks=True)
    (course / "grades.csv").unlink()
    return course


def test_a_missing_or_failed_shard_is_named_and_nothing_is_written(sharded, tmp_path, capsys):
    course = _copy(sharded, tmp_path)
    (course / "shards" / "shard-00001-of-00002.json").unlink()
    before = _dump(course)
    assert grading.main(["merge", "--course", str(course), "--shards", "2"]) == 3
    message = capsys.readouterr().err
    assert "shard 1/2 is missing" in message and "nothing was written" in message
    assert f"autograde --course {course} --shard 1/2" in message
    assert not (course / "grades.csv").exists() and _dump(course) == before
    with pytest.raises(judge_error()):  # a shard that cannot grade says so in its file
        _shard(course, cluster.Shard(1, 2), settings=Settings(exercises=str(tmp_path / "missing_table.py")))
    record = json.loads((course / "shards" / "shard-00001-of-00002.json").read_text())
    assert record["status"] == "failed" and "TableUnavailable" in record["error"]
    with pytest.raises(cluster.IncompleteClass, match=r"shard 1/2 failed on .*TableUnavailable"):
        cluster.merge(course, 2, quiet=True)
    with pytest.raises(cluster.IncompleteClass, match=r"shard 0/3 is missing.*shard 2/3 is missing.*holds shards "
                                                      r"of N=2"):
        cluster.merge(course, 3, quiet=True)
    _shard(course, cluster.Shard(1, 2))  # graded again: only its own file is replaced
    cluster.merge(course, 2, quiet=True)
    assert classroom.rows(course) == classroom.rows(sharded["alone"])


def judge_error():
    from vitcourse.judge.verdict import TableUnavailable

    return TableUnavailable


def test_a_submission_changed_after_its_shard_ran_is_not_merged(sharded, tmp_path):
    course = _copy(sharded, tmp_path)
    late = course / "submitted" / "s0003" / "grading_mini" / "grading_mini.ipynb"
    late.write_text(late.read_text() + " ")
    owner = cluster.shard_of("s0003", "grading_mini", 2)
    with pytest.raises(cluster.IncompleteClass, match=rf"shard {owner}/2 was graded before submissions changed "
                                                      rf"\(1: s0003/grading_mini/grading_mini.ipynb\)"):
        cluster.merge(course, 2, quiet=True)
    newcomer = course / "submitted" / "zoe" / "grading_mini"
    shutil.copytree(course / "submitted" / "s0001" / "grading_mini", newcomer)
    with pytest.raises(cluster.IncompleteClass, match=r"zoe/grading_mini/grading_mini.ipynb"):
        cluster.merge(course, 2, quiet=True)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda r: r.update(vitcourse="0.0.1"), r"written by vitcourse 0.0.1, this is vitcourse .*: grade every shard "
                                             r"again with this version"),
    (lambda r: r.update(course_id="another"), r"written for course 'another', but this course is 'vitsteps'"),
    (lambda r: r.update(assignments={"01_patches_unfold": "0" * 64}), r"graded for the assignments "
                                                                       r"\['01_patches_unfold'\], but the course has "
                                                                       r"\['grading_mini'\]"),
    (lambda r: r["assignments"].update(grading_mini="0" * 64), r"other source notebooks of grading_mini"),
    (lambda r: r.update(shard=1), r"says it is shard 1/2, not 0/2"),
])
def test_a_results_folder_of_another_course_sources_or_version_is_refused(sharded, tmp_path, edit, words, capsys):
    course = _copy(sharded, tmp_path)
    path = course / "shards" / "shard-00000-of-00002.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    with pytest.raises(cluster.ShardMismatch, match=words):
        cluster.merge(course, 2, quiet=True)
    assert grading.main(["merge", "--course", str(course), "--shards", "2"]) == 1
    assert "merge: " in capsys.readouterr().err and not (course / "grades.csv").exists()


def test_a_shard_killed_midway_leaves_no_result_and_is_graded_again(sharded, tmp_path):
    course = _copy(sharded, tmp_path)
    shutil.rmtree(course / "shards")
    slow = classroom.solved(nbformat.read(classroom.MINI, as_version=4),
                            {"exmini_head": "import time\ntime.sleep(0.5)\n"
                                            "def head_dim(embed_dim, num_heads):\n    return embed_dim // num_heads"})
    for number in range(10):  # and the hanging one made slow too
        nbformat.write(slow, course / "submitted" / f"s{number:04d}" / "grading_mini" / "grading_mini.ipynb")
    command = [sys.executable, "-m", "vitcourse.grading", "autograde", "--course", str(course), *CLI, "--jobs", "1",
               "--shard", "0/1"]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = worker.stdout.readline()
        while first.startswith("calibrated "):  # the solution is timed first
            first = worker.stdout.readline()
        graded = [first, worker.stdout.readline()]  # two graded, the class not finished
        assert all(line.startswith("graded ") for line in graded), graded
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert list((course / "shards").iterdir()) == []  # no result, not even a part of one
    with pytest.raises(cluster.IncompleteClass, match=r"shard 0/1 is missing"):
        cluster.merge(course, 1, quiet=True)
    for path in (course / "autograded").rglob("*.ipynb"):  # what it wrote before it died is whole
        nbformat.read(path, as_version=4)
    started = time.monotonic()
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    assert time.monotonic() - started < 290
    assert [path.name for path in (course / "shards").iterdir()] == ["shard-00000-of-00001.json"]
    cluster.merge(course, 1, quiet=True)
    rows = classroom.rows(course)
    assert [row["points"] for row in rows if row["notebook"]] == ["5"] * 10


# ------------------------------------------------------------------------------------------ Slurm commands


def test_the_slurm_commands_are_an_array_and_a_merge_after_it(tmp_path):
    (tmp_path / "source").mkdir()
    grade, merge = slurm.sbatch_commands(tmp_path, 4, ["--partition=short"],
                                         ["--exercises", "table.py", "--results", "/shared/r"])
    assert grade[:3] == ["sbatch", "--parsable", "--array=0-3"] and grade[-1] == str(slurm.GRADE_SCRIPT)
    assert "--partition=short" in grade and "--partition=short" in merge
    assert "--dependency=afterok:{job}" in merge and merge[-1] == str(slurm.MERGE_SCRIPT)
    export = next(arg for arg in merge if arg.startswith("--export=ALL,"))
    assert f"VITCOURSE_COURSE={tmp_path.resolve()}" in export and "VITCOURSE_SHARDS=4" in export
    assert "VITCOURSE_ARGS=--exercises table.py --results /shared/r" in export
    assert "VITCOURSE_MERGE_ARGS=--results /shared/r" in export
    script = slurm.GRADE_SCRIPT.read_text()
    assert '-m vitcourse.grading autograde --course "$VITCOURSE_COURSE"' in script and "--array=0-3" in script
    assert '-m vitcourse.grading merge --course "$VITCOURSE_COURSE"' in slurm.MERGE_SCRIPT.read_text()
    for path in (slurm.GRADE_SCRIPT, slurm.MERGE_SCRIPT):
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


@pytest.mark.parametrize(("arguments", "error", "words"), [
    ({"shards": 0}, ValueError, r"shards must be an int from 1 to .*got 0"),
    ({"shards": "4"}, ValueError, r"shards must be an int .*got '4'"),
    ({"sbatch_args": "--partition=short"}, TypeError, r"lists of arguments, not one string"),
    ({"autograde_args": ["--exercises", "a,b.py"]}, ValueError, r"holds a comma"),
])
def test_bad_slurm_submissions_are_named(tmp_path, arguments, error, words):
    (tmp_path / "source").mkdir()
    assert_refused(lambda: slurm.sbatch_commands(tmp_path, **{"shards": 4, **arguments}), error, words)


# ------------------------------------------------------------------------------------------ Kubernetes


def test_the_kubernetes_jobs_run_each_shard_and_the_merge_through_the_command_line(monkeypatch):
    yaml = pytest.importorskip("yaml")
    from vitcourse.cluster import kubernetes

    text = kubernetes.render("registry/grader:1", "course-data", 5, "/srv/course", cpus=3,
                             autograde_args=["--exercises", "/srv/course/table.py"])
    grade_job, merge_job = yaml.safe_load_all(text)
    assert "${" not in text and grade_job["kind"] == merge_job["kind"] == "Job"
    spec = grade_job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 5, 5)
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["VITCOURSE_SHARDS"] == str(spec["completions"])
    assert container["resources"]["limits"] == {"cpu": "3", "memory": "8Gi", "ephemeral-storage": "4Gi"}
    assert container["securityContext"]["seccompProfile"] == {"type": "Unconfined"}  # bubblewrap's namespaces
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "course-data"
    assert container["volumeMounts"][0]["mountPath"] == "/srv/course"
    assert container["command"][:3] == ["python", "-m", "vitcourse.grading"]
    seen = []
    monkeypatch.setattr(cluster, "grade_shard", lambda course, shard, limits, **kw: seen.append((course, shard, kw)))
    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    for index in range(spec["completions"]):  # what Kubernetes sets in each pod, then the pod's own command
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert grading.main(container["command"][3:]) == 0
    assert [shard for _, shard, _ in seen] == [cluster.Shard(index, 5) for index in range(5)]
    assert {(str(course), kw["jobs"]) for course, _, kw in seen} == {("/srv/course", 3)}
    assert {kw["settings"].exercises for _, _, kw in seen} == {"/srv/course/table.py"}
    merged = []
    monkeypatch.setattr(cluster, "merge", lambda course, shards, results: merged.append((str(course), shards)))
    (merger,) = merge_job["spec"]["template"]["spec"]["containers"]
    assert grading.main(merger["command"][3:]) == 0 and merged == [("/srv/course", spec["completions"])]
    assert merge_job["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize(("arguments", "words"), [
    ({"shards": 0}, r"shards must be an int from 1 to .*got 0"),
    ({"cpus": 0}, r"cpus must be an int from 1 to 64, got 0"),
    ({"memory": "lots"}, r"memory must be a Kubernetes quantity, got 'lots'"),
    ({"name": "Grade_Jobs"}, r"name must be a DNS label"),
    ({"course": "srv/course"}, r"course must be an absolute path"),
    ({"image": 'x" ; rm'}, r"image must be a non-empty string without quotes"),
])
def test_bad_kubernetes_settings_are_named(arguments, words):
    from vitcourse.cluster import kubernetes

    assert_refused(lambda: kubernetes.render(**{"image": "grader:1", "claim": "data", "shards": 2, **arguments}),
                   ValueError, words)
