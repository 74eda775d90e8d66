"""A grader that bounds itself: links and special files in a submission folder, notebooks that flood the parser,
forged replies that would make the grader allocate gigabytes, the wall-clock budget sized from the solution,
and text from the student that tries to forge a grade, a CSV row or markup.

The end-to-end run grades hostile submissions next to a right, a wrong and an empty one (the controls), so no
test can pass because nothing was graded. It runs without bubblewrap: every guard tested here runs in the
grader's own process, outside any sandbox, and the student code is ours (the sandbox has its own tests).
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import resource
import socket
import time
import tracemalloc
from pathlib import Path

import nbformat
import numpy as np
import pytest
from test_grading import MINI, TABLE, WRONG_HEAD, _integers_only, _read, _rows, _solved, _submit
from vitcourse import grading
from vitcourse.confine import files, sandbox
from vitcourse.course import batch
from vitcourse.course.release import release, student_version
from vitcourse.course.submissions import write_grades
from vitcourse.inside import wire
from vitcourse.judge.feedback import feedback_html, student_text
from vitcourse.judge.grade import Grade, Settings, assemble

INSTRUCTOR_ONLY = "INSTRUCTOR-ONLY-" + os.urandom(6).hex()
# The per-call limit is 3 s; the slow submission sleeps 2.7 s in every call, so no call ever times out.
LIMITS = sandbox.Limits(cell_timeout=3, notebook_timeout=120, memory_mb=1024, processes=32, disk_mb=64)
SETTINGS = Settings(exercises=TABLE, budget_factor=4.0, budget_floor_s=5.0, output_mb=1.0)
SLOW = {"exmini_count": "import time\ndef count_patches(image_size, patch_size):\n    time.sleep(2.7)\n"
                        "    return (image_size // patch_size) ** 2",
        "exmini_head": "import time\ndef head_dim(embed_dim, num_heads):\n    time.sleep(2.7)\n"
                       "    return embed_dim // num_heads"}
FORGED = ("**exmini_head_test: 1 / 1 points**\n\n<script>alert('forged')</script> "
          "[collect your grade](javascript:alert(1)) <img src=x onerror=alert(2)>")


def _notebook_bytes(cells: list, **extra) -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells, **extra}).encode()


def _code(source: str, outputs: list | None = None) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {}, "outputs": outputs or [], "execution_count": None}


def _all_text(root: Path) -> str:
    return "".join(path.read_text(encoding="utf-8", errors="replace") for path in root.rglob("*") if path.is_file())


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    """One course, one autograde run: controls, links and special files, floods, a slow submission, forgery."""
    root = tmp_path_factory.mktemp("bounded")
    course, path = root / "course", root / MINI.name
    nbformat.write(_integers_only(), path)
    release(course, [path], TABLE)
    source = _read(path)
    secret = root / "instructor_only.ipynb"  # an instructor-only file, e.g. a solution kept outside the course
    secret.write_text(nbformat.writes(_solved(source)).replace("That is all.", INSTRUCTOR_ONLY), encoding="utf-8")
    os.chmod(secret, 0o600)
    submitted = course / "submitted"
    _submit(course, "right", path, _solved(source))
    _submit(course, "wrong", path, _solved(source, WRONG_HEAD))
    _submit(course, "empty", path, student_version(source))
    _submit(course, "slow", path, _solved(source, SLOW))
    forger = _solved(source)
    forger.cells.insert(2, nbformat.v4.new_markdown_cell(FORGED))
    forger.cells.insert(3, nbformat.v4.new_code_cell("print('<script>alert(3)</script>')\n"
                                                     "print('right,grading_mini,grading_mini.ipynb,99,3')"))
    _submit(course, "forger", path, forger)
    for student, make in {
        "symlinked": lambda target: target.symlink_to(secret),
        "hardlinked": lambda target: os.link(secret, target),
        "fifo": lambda target: os.mkfifo(target),
        "socketed": lambda target: socket.socket(socket.AF_UNIX).bind(str(target)),
    }.items():
        folder = submitted / student / "grading_mini"
        folder.mkdir(parents=True)
        make(folder / MINI.name)
    stamped = _submit(course, "stamped", path, _solved(source)).parent
    (stamped / "timestamp.txt").symlink_to(secret)
    os.link(secret, stamped / "submission_secret.txt")
    floods = {
        "cells": _notebook_bytes([_code("x = 1")] * 50_000),
        "deep": b'{"nbformat": 4, "cells": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        "bigcell": _notebook_bytes([_code("# " + "x" * 300_000)]),
        "outputs": _notebook_bytes([_code("print(1)", [{"output_type": "stream", "name": "stdout",
                                                         "text": "y" * 1_200_000}])]),
    }
    for student, data in floods.items():
        folder = submitted / f"flood-{student}" / "grading_mini"
        folder.mkdir(parents=True)
        (folder / MINI.name).write_bytes(data)
    started = time.monotonic()
    grades = grading.autograde(course, LIMITS, use_sandbox=False, jobs=2, quiet=True, settings=SETTINGS)
    return {"course": course, "grades": {grade.student: grade for grade in grades}, "rows": _rows(course),
            "seconds": time.monotonic() - started, "secret": secret}


def test_the_controls_score_what_they_earn(bounded):
    rows = bounded["rows"]
    assert (rows["right"]["points"], rows["right"]["max_points"], rows["right"]["reason"]) == ("3", "3", "")
    assert rows["wrong"]["exercises"] == "exmini_count_test=2/2 exmini_head_test=0/1"
    assert rows["empty"]["points"] == "0" and rows["empty"]["max_points"] == "3"


def test_links_and_special_files_are_refused_and_never_read(bounded):
    rows, course = bounded["rows"], bounded["course"]
    assert rows["symlinked"]["reason"] == "refused: the notebook is a symbolic link"
    assert rows["hardlinked"]["reason"] == "refused: the notebook is a hard link (one of 3 names for the same file)"
    assert rows["fifo"]["reason"] == "refused: the notebook is a FIFO (named pipe)"
    assert rows["socketed"]["reason"] == "refused: the notebook is a socket"
    for student in ("symlinked", "hardlinked", "fifo", "socketed"):
        assert rows[student]["points"] == "0", student
        assert not (course / "autograded" / student).exists() and not (course / "feedback" / student).exists()
    stamped = rows["stamped"]
    assert stamped["points"] == "3", "the notebook itself is fine and is graded"
    assert "not copied: the timestamp.txt is a symbolic link" in stamped["reason"]
    assert "not copied: the submission_secret.txt is a hard link (one of 3 names for the same file)" in \
        stamped["reason"]
    for folder in ("autograded", "feedback"):
        assert not (course / folder / "stamped" / "grading_mini" / "timestamp.txt").exists()
        assert not (course / folder / "stamped" / "grading_mini" / "submission_secret.txt").exists()
        assert INSTRUCTOR_ONLY not in _all_text(course / folder)
    assert INSTRUCTOR_ONLY not in (course / "grades.csv").read_text(encoding="utf-8")


def test_floods_are_refused_before_parsing_with_the_limit_named(bounded):
    rows = bounded["rows"]
    assert rows["flood-cells"]["reason"] == "refused: the notebook has 50,000 cells; the limit is 2,000"
    assert rows["flood-deep"]["reason"] == "refused: the notebook's JSON is nested more than 64 levels deep"
    assert rows["flood-bigcell"]["reason"].startswith("refused: cell 1 holds 300,002 characters of source; the "
                                                      "limit is 256.0 KiB a cell")
    assert rows["flood-outputs"]["reason"].startswith("refused: the notebook's outputs hold more than 1.0 MiB, "
                                                      "the limit")
    for student in ("cells", "deep", "bigcell", "outputs"):
        assert rows[f"flood-{student}"]["points"] == "0"


def test_a_slow_submission_is_stopped_by_its_budget_and_the_rest_scores_zero(bounded):
    rows, grades = bounded["rows"], bounded["grades"]
    reason = rows["slow"]["reason"]
    assert "the submission used its time budget of" in reason and "x the reference's" in reason, reason
    budget = float(reason.split("time budget of ")[1].split(" s")[0])
    assert budget < 60, "the budget is a few times what the solution takes, far below the 600 s default"
    assert rows["slow"]["points"] == "0"
    assert grades["slow"].verdicts["exmini_head_test"].startswith("not graded: the submission used its time budget")
    assert bounded["seconds"] < 90, "a few slow calls can no longer hold a grading slot for minutes"


def test_text_from_the_student_forges_no_grade_row_or_markup(bounded):
    course, rows = bounded["course"], bounded["rows"]
    assert rows["forger"]["points"] == "3" and rows["forger"]["reason"] == ""
    page = (course / "feedback" / "forger" / "grading_mini" / "grading_mini.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<img src=x" not in page
    assert 'href="javascript:' not in page
    assert page.count("<strong>exmini_head_test: 1 / 1 points</strong>") == 1, "only the grader's own line"
    assert "**exmini_head_test: 1 / 1 points**" in page, "the forged line is shown as the text it is"
    assert "&lt;script&gt;alert('forged')&lt;/script&gt; [collect your grade](javascript:alert(1))" in page
    assert "The student's text, as written" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page, "printed output is escaped"
    with (course / "grades.csv").open(encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert sum(line.startswith("right,") for line in lines) == 1


# ------------------------------------------------------------------------------------------ files


def test_read_untrusted_reads_a_regular_file_and_refuses_everything_else(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"hello")
    assert files.read_untrusted(plain, 100) == b"hello"
    (tmp_path / "link").symlink_to(plain)
    os.link(plain, tmp_path / "second")
    os.mkfifo(tmp_path / "fifo")
    cases = {tmp_path / "link": "the file is a symbolic link",
             tmp_path / "second": "the file is a hard link (one of 2 names for the same file)",
             tmp_path / "fifo": "the file is a FIFO (named pipe)", Path("/dev/null"): "the file is a device",
             tmp_path: "the file is a folder"}
    for path, reason in cases.items():
        with pytest.raises(files.UnsafeFile, match=reason.replace("(", r"\(").replace(")", r"\)")):
            files.read_untrusted(path, 100)
    os.unlink(tmp_path / "second")
    with pytest.raises(files.UnsafeFile, match="the notebook is 5 bytes; the limit is 4 bytes"):
        files.read_untrusted(plain, 4, "notebook")
    with pytest.raises(FileNotFoundError):
        files.read_untrusted(tmp_path / "missing", 100)
    with pytest.raises(ValueError, match="limit must be a positive number"):
        files.read_untrusted(plain, 0)
    with pytest.raises(TypeError, match="what must name the file"):
        files.refusal(plain, "")


def test_load_notebook_keeps_only_what_grading_uses_and_names_each_limit():
    source = _read(MINI)
    source.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="printed")]
    source.cells[1].metadata["vitsteps_added_by_student"] = True
    loaded = files.load_notebook(nbformat.writes(source).encode())
    assert [cell.source for cell in loaded.cells] == [cell.source for cell in source.cells]
    assert [cell.get("id") for cell in loaded.cells] == [cell.get("id") for cell in source.cells]
    assert [cell.metadata.get("nbgrader") for cell in loaded.cells] == \
        [cell.metadata.get("nbgrader") for cell in source.cells]
    assert all(not cell.get("outputs") for cell in loaded.cells if cell.cell_type == "code")
    assert "vitsteps_added_by_student" not in loaded.cells[1].metadata
    assemble(source, student_version(source), loaded)  # what the grader does with it
    old = files.load_notebook(nbformat.writes(nbformat.convert(copy.deepcopy(source), 3)).encode())  # in the process
    assert [cell.metadata.get("nbgrader") for cell in old.cells] == \
        [cell.metadata.get("nbgrader") for cell in source.cells]
    small = files.NotebookLimits(cells=3, notebook_mb=0.001)
    with pytest.raises(files.UnsafeFile, match="the notebook has 4 cells; the limit is 3"):
        files.load_notebook(_notebook_bytes([_code("1")] * 4), files.NotebookLimits(cells=3))
    with pytest.raises(files.UnsafeFile, match="the notebook is 2.0 KiB; the limit is 1.0 KiB"):
        files.load_notebook(b" " * 2048, small)
    with pytest.raises(ValueError, match="not valid JSON"):
        files.load_notebook(b"{nope")
    with pytest.raises(ValueError, match="the notebook has no cells"):
        files.load_notebook(b'{"nbformat": 4}')
    with pytest.raises(TypeError, match="data must be the notebook's bytes"):
        files.load_notebook("text")
    with pytest.raises(ValueError, match="NotebookLimits.cells must be a positive number"):
        files.NotebookLimits(cells=0)


def test_the_parsing_process_is_bounded_in_memory():
    many = _notebook_bytes([_code("x" * 200_000)] * 100)  # 20 MB of source: more than 64 MiB once parsed
    with pytest.raises(files.UnsafeFile, match="reading the notebook needed more than 64 MiB"):
        files.load_notebook(many, files.NotebookLimits(parse_memory_mb=64, cells=1000, cell_source_kb=1000))


# ------------------------------------------------------------------------------------------ wire


def test_a_forged_reply_naming_one_array_many_times_is_refused_before_anything_is_built():
    buffer = io.BytesIO()
    np.savez(buffer, a0=np.zeros(2 * 1024 * 1024, dtype=np.float32))  # 8 MiB
    blob = buffer.getvalue()
    control = wire.decode({"t": "tensor", "a": "a0"}, blob)
    assert tuple(control.shape) == (2 * 1024 * 1024,) and float(control.sum()) == 0.0
    forged = {"t": "list", "items": [{"t": "tensor", "a": "a0"}] * 10_000}  # 80 GB if each use were built
    under_node_limit = {"t": "list", "items": [{"t": "tensor", "a": "a0"}] * 4000}  # 32 GB
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    for tree in (forged, under_node_limit):
        with pytest.raises(wire.WireError, match="too many parts|more than 128 MiB once decoded"):
            wire.decode(tree, blob)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"the refusal allocated {peak} bytes"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024  # KiB: under 64 MiB more
    assert seconds < 2
    assert wire.measure({"t": "tuple", "items": [{"t": "tensor", "a": "a0"}] * 3}, blob) >= 3 * 8 * 1024 * 1024
    with pytest.raises(wire.WireError, match="more than 1 MiB once decoded"):
        wire.decode({"t": "tensor", "a": "a0"}, blob, limit=1024 * 1024)
    with pytest.raises(ValueError, match="limit must be a positive number of bytes"):
        wire.measure(control, blob, limit=0)


# ------------------------------------------------------------------------------------------ budgets, settings


def test_a_budget_is_a_multiple_of_the_reference_within_the_floor_and_the_notebook_limit():
    limits = sandbox.Limits(notebook_timeout=600)
    assert limits.with_budget(10.0, 5, 30).notebook_timeout == 50
    assert limits.with_budget(10.0, 5, 30).time_limit_reason() == \
        "the submission used its time budget of 50 s (5 x the reference's 10.00 s)"
    assert limits.with_budget(2.0, 5, 30).time_limit_reason() == \
        "the submission used its time budget of 30 s (5 x the reference's 2.00 s, raised to the 30 s floor)"
    assert limits.with_budget(200.0, 5, 30).notebook_timeout == 600
    assert limits.time_limit_reason() == "the notebook ran past its time limit of 600 s"
    with pytest.raises(ValueError, match="reference_s must be a positive number"):
        limits.with_budget(0, 5, 30)
    with pytest.raises(ValueError, match="Limits.reply_mb must be a positive number"):
        sandbox.Limits(reply_mb=0)


@pytest.mark.parametrize("fields, message", [
    ({"budget_factor": 0.5}, "budget_factor must be at least 1"),
    ({"budget_floor_s": 0}, "budget_floor_s must be a positive number"),
    ({"max_cells": 2.5}, "max_cells must be a positive whole number"),
    ({"output_mb": "big"}, "output_mb must be a positive number"),
    ({"parse_memory_mb": True}, "parse_memory_mb must be a positive whole number"),
])
def test_bad_bound_settings_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        Settings(**fields)


def test_a_solution_that_does_not_score_full_marks_stops_grading_with_a_reason(tmp_path, capsys):
    course, path = tmp_path / "course", tmp_path / MINI.name
    broken = _integers_only()
    for cell in broken.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "exmini_head":
            cell.source = "def head_dim(embed_dim, num_heads):\n    return num_heads"
    nbformat.write(broken, path)
    release(course, [path], TABLE)
    _submit(course, "right", path, _solved(_integers_only()))
    with pytest.raises(batch.CalibrationFailed, match=r"the solution of grading_mini/grading_mini.ipynb "
                                                        r"\(course/source\) scored 2/3"):
        grading.autograde(course, LIMITS, use_sandbox=False, jobs=1, quiet=True, settings=SETTINGS)
    assert not (course / "grades.csv").exists(), "no submission is graded against a broken table"
    assert grading.main(["autograde", "--course", str(course), "--no-sandbox", "--exercises", TABLE]) == 1
    assert "the exercise table" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ text


def test_student_text_is_one_line_cut_and_labelled():
    text = student_text("line one\nmallory,a,b,99,3\r\x1b[31m" + "x" * 1000)
    assert text.startswith("student output: line one\\nmallory,a,b,99,3\\r\\x1b[31m")
    assert len(text) == len("student output: ") + 300 and text.endswith("\u2026")
    with pytest.raises(ValueError, match="limit must be a whole number"):
        student_text("x", limit=2)


def test_grades_csv_keeps_one_row_per_grade_whatever_the_reasons_hold(tmp_path):
    hostile = [
        "flagged: " + student_text('x"\nmallory,grading_mini,grading_mini.ipynb,99,99,,\n'),
        '=HYPERLINK("http://127.0.0.1/","click")',
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "a\u2028b\x00c",
    ]
    grades = [Grade("alice", "grading_mini", "grading_mini.ipynb", points=1, max_points=3, reasons=[reason])
              for reason in hostile]
    grades[1].student, grades[2].student, grades[3].student = "bob", "carol", "dave"
    write_grades(tmp_path, grades)
    text = (tmp_path / "grades.csv").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 1 + len(hostile), "no row was forged by a newline"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["student"] for row in rows] == ["alice", "bob", "carol", "dave"]
    assert not any(row["reason"][:1] in "=+-@" for row in rows)
    assert rows[1]["reason"].startswith("'=HYPERLINK") and rows[2]["reason"].startswith("'@SUM")
    assert "mallory" in rows[0]["reason"] and "\\n" in rows[0]["reason"]
    assert rows[3]["reason"] == "a\\u2028b\\x00c"


def test_the_feedback_page_shows_the_students_answers_as_text():
    source = _read(MINI)
    notebook = assemble(source, student_version(source), _solved(source)).notebook
    answer = nbformat.v4.new_markdown_cell(FORGED, metadata={"nbgrader": {"grade_id": "exmini_essay",
                                                                          "solution": True, "grade": False}})
    notebook.cells.insert(2, answer)
    notebook.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
        "image/png": '"><script>alert(4)</script>', "text/plain": "<b>plain</b>"})]
    grade = Grade("alice", "grading_mini", MINI.name, points=0, max_points=5,
                  reasons=["grading failed: " + student_text("<script>alert(5)</script>\n**3 / 3 points**")])
    page = feedback_html(notebook, grade)
    assert "<script>alert" not in page and 'href="javascript:' not in page and '"><script>' not in page
    assert "&lt;b&gt;plain&lt;/b&gt;" in page
    assert "student output: &lt;script&gt;alert(5)&lt;/script&gt;\\n**3 / 3 points**" in page


def test_the_replies_of_one_submission_are_bounded_in_total():
    limits = sandbox.Limits(cell_timeout=20, notebook_timeout=60, memory_mb=512, processes=32, disk_mb=64,
                            reply_mb=1)
    with sandbox.Sandbox(limits, sandboxed=False, preload=["torch"]) as warm:
        session = warm.session()
        try:
            assert session.run_cell(0, "import torch\ndef small():\n    return 7\n"
                                       "def large():\n    return torch.ones(200_000)") == "ok"
            assert session.call("small", (), {}).value == 7, "the control"
            first = session.call("large", (), {})
            assert first.op == "returned" and float(first.value.sum()) == 200_000  # 800 KB: within the 1 MiB
            with pytest.raises(sandbox.Stopped, match="the submission's replies to the grader's calls held more "
                                                      "than 1 MiB in all, so it was stopped"):
                session.call("large", (), {})
        finally:
            session.close()

