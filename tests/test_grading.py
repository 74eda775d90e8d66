"""Student versions, the tamper scan, the sandbox, and autograding end to end (correct, partly wrong, hostile)."""
from __future__ import annotations

import ast
import copy
import csv
import hashlib
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import nbformat
import pytest

# CI sets VITSTEPS_REQUIRE_SANDBOX=1: there a missing nbgrader or bubblewrap fails the tests instead of skipping them.
REQUIRE_SANDBOX = os.environ.get("VITSTEPS_REQUIRE_SANDBOX") == "1"
if not REQUIRE_SANDBOX:
    pytest.importorskip("nbgrader", reason="the instructor extra (nbgrader) is not installed")

from vitsteps.teach.checks import CheckFailed  # noqa: E402
from vitcourse import grading, sandbox  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MINI = Path(__file__).parent / "fixtures" / "grading_mini.ipynb"
EXERCISE_NOTEBOOKS = sorted((REPO / "notebooks").glob("0[1-6]_*.ipynb"))
STAGE_NOTEBOOKS = sorted((REPO / "notebooks").glob("0[0-6]_*.ipynb"))
REAL = REPO / "notebooks" / "01_patches_unfold.ipynb"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None and not REQUIRE_SANDBOX,
                                 reason="bubblewrap is not installed (apt-get install -y bubblewrap)")
# An endless loop that swallows the interrupt (the signal lands inside the inner loop, within the try).
STUBBORN_LOOP = ("while True:\n    try:\n        while True:\n            pass\n"
                 "    except KeyboardInterrupt:\n        pass")
QUICK = sandbox.Limits(cell_timeout=3, notebook_timeout=40, memory_mb=1024, cell_output_kb=64)


# ------------------------------------------------------------------------------------------ helpers


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _without_delimiters(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def _solved(source: nbformat.NotebookNode, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """What a student hands in: the student version with every solution written (the source's, or `answers`)."""
    answers = answers or {}
    notebook = grading.student_version(source)
    solutions = {_grade_id(c): _without_delimiters(c.source) for c in source.cells if grading._is_solution(c)}
    for cell in notebook.cells:
        grade_id = _grade_id(cell)
        if grade_id in solutions:
            cell.source = answers.get(grade_id, solutions[grade_id])
    return notebook


def _insert_after(notebook: nbformat.NotebookNode, index: int, code: str) -> nbformat.NotebookNode:
    notebook = copy.deepcopy(notebook)
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return notebook


def _first_code_index(notebook: nbformat.NotebookNode) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")


def _index_of(notebook: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if _grade_id(cell) == grade_id)


def _submit(course: Path, student: str, source_path: Path, notebook: nbformat.NotebookNode) -> Path:
    folder = course / "submitted" / student / source_path.stem
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / source_path.name)
    return folder / source_path.name


def _digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()
            and not any(str(path.relative_to(root)).startswith(prefix) for prefix in skip)}


def _rows(course: Path) -> dict[str, dict[str, str]]:
    with (course / "grades.csv").open(encoding="utf-8") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


class _Listener:
    """A TCP server on the host's loopback that records whether anyone connected."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


# ------------------------------------------------------------------------------------------ student versions


@pytest.mark.parametrize("path", STAGE_NOTEBOOKS + [MINI], ids=lambda p: p.stem)
def test_student_version_has_stubs_no_hidden_tests_and_no_outputs(path):
    source = _read(path)
    student = grading.student_version(source)
    text = nbformat.writes(student)
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert all(not cell.get("outputs") for cell in student.cells if cell.cell_type == "code")
    assert "widgets" not in student.metadata
    assert [_grade_id(c) for c in student.cells] == [_grade_id(c) for c in source.cells]
    assert [c.get("id") for c in student.cells] == [c.get("id") for c in source.cells]
    for cell in student.cells:
        if grading._is_solution(cell):
            assert "raise NotImplementedError()" in cell.source and cell.metadata.get("editable", True)
        if grading._is_test(cell):
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False


def _imports_of(notebook: nbformat.NotebookNode) -> str:
    lines = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or grading._is_solution(cell) or grading._is_test(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        lines += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS + [MINI], ids=lambda p: p.stem)
def test_a_stub_never_passes_its_test(path):
    source = _read(path)
    student = grading.student_version(source)
    solutions = [c for c in student.cells if grading._is_solution(c)]
    tests = {_grade_id(c): c.source for c in source.cells if grading._is_test(c)}
    visible = {_grade_id(c): c.source for c in student.cells if grading._is_test(c)}
    assert solutions and tests
    namespace: dict = {}
    exec(_imports_of(source), namespace)  # noqa: S102 - the notebook's own imports
    for cell in solutions:
        exec(cell.source, namespace)  # noqa: S102 - the generated stub
    for grade_id in tests:
        for test_source in (visible[grade_id], tests[grade_id]):
            first_statement = ast.unparse(ast.parse(test_source).body[0])
            with pytest.raises((CheckFailed, NotImplementedError)):
                exec(first_statement, namespace)  # noqa: S102


def test_make_student_writes_source_release_and_config_even_without_exercises(tmp_path, capsys):
    overview = REPO / "notebooks" / "00_overview.ipynb"
    paths = [overview, MINI] if overview.exists() else [MINI]
    assert grading.main(["student", "--course", str(tmp_path / "course"), *map(str, paths)]) == 0
    course = tmp_path / "course"
    for path in paths:
        assert (course / "source" / path.stem / path.name).read_bytes() == path.read_bytes()
        assert (course / "release" / path.stem / path.name).is_file()
    assert (course / "nbgrader_config.py").is_file() and (course / "submitted").is_dir()
    printed = capsys.readouterr().out
    assert "grading_mini: 2 graded test cells" in printed
    if overview.exists():
        assert "00_overview: 0 graded test cells" in printed


def test_make_student_refuses_a_path_that_is_not_a_notebook(tmp_path):
    with pytest.raises(SystemExit):
        grading.main(["student", "--course", str(tmp_path / "course"), str(tmp_path / "missing.ipynb")])


def test_make_student_names_the_notebook_whose_solution_lacks_metadata(tmp_path, capsys):
    broken = _read(MINI)
    broken.cells[_index_of(broken, "exmini_count")].metadata.pop("nbgrader")
    path = tmp_path / "broken.ipynb"
    nbformat.write(broken, path)
    with pytest.raises(SystemExit):
        grading.main(["student", "--course", str(tmp_path / "course"), str(path)])
    assert "broken.ipynb" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ assembling


def test_assembly_restores_edited_and_deleted_tests_and_keeps_added_cells():
    source = _read(MINI)
    released = grading.student_version(source)
    student = _solved(source)
    student.cells[_index_of(student, "exmini_count_test")].source = "pass"
    del student.cells[_index_of(student, "exmini_head_test")]
    student = _insert_after(student, _index_of(student, "exmini_count"), "helper = 1")
    fake = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {"grade": True, "grade_id": "mine", "points": 99,
                                                                     "locked": True, "solution": False}})
    student.cells.append(fake)
    assembled = grading.assemble(source, released, student)
    sources = [cell.source for cell in assembled.notebook.cells]
    assert any("BEGIN HIDDEN TESTS" in text and "count_patches(224, 16)" in text for text in sources)
    assert any("head_dim(768, 12)" in text for text in sources)
    assert sources.index("helper = 1") == sources.index(next(s for s in sources if "def count_patches" in s)) + 1
    assert "test cell exmini_count_test was edited (the original was used)" in assembled.notes
    assert "test cell exmini_head_test was deleted (restored for grading)" in assembled.notes
    assert sum(grading._is_test(cell) for cell in assembled.notebook.cells) == 2  # the fake test cell earns nothing
    assert "return (image_size // patch_size) ** 2" in sources[_index_of(source, "exmini_count")]


def test_a_marker_counts_only_when_the_test_cell_showed_it():
    notebook = grading.student_version(_read(MINI))
    markers = grading._add_markers(notebook)
    first, second = sorted(markers)
    assert markers[first] != markers[second] and notebook.cells[first].source.endswith(repr(markers[first]))
    shown = nbformat.v4.new_output("execute_result", data={"text/plain": repr(markers[first])})
    notebook.cells[first].outputs = [shown]
    notebook.cells[second].outputs = [nbformat.v4.new_output("stream", name="stdout", text=markers[second])]
    seen = grading._remove_markers(notebook, markers)
    assert seen == {first: True, second: False}
    assert notebook.cells[first].outputs == [] and "vitsteps-grader" not in notebook.cells[first].source


# ------------------------------------------------------------------------------------------ tamper scan


PROTECTED = {"check": "vitsteps.checks:check", "torch": "torch", "vitsteps": "vitsteps", "isinstance": ""}
MODULES = {"F", "check", "torch", "vitsteps", "viz"}
TAMPERING = {
    "patch the check": "import vitsteps.checks\nvitsteps.checks.check = lambda *a, **k: True",
    "rebind check": "check = lambda *a, **k: True",
    "redefine check": "def check(*a, **k):\n    return True",
    "import over check": "from vitsteps.patches import image_to_patches as check",
    "sys.modules": "import sys\nsys.modules['vitsteps.checks'].check = print",
    "setattr on a module": "setattr(vitsteps.checks, 'check', print)",
    "builtins": "import builtins\nbuiltins.isinstance = lambda *a: True",
    "__builtins__": "__builtins__['isinstance'] = lambda *a: True",
    "custom exception handler": "get_ipython().set_custom_exc((Exception,), lambda *a: None)",
    "input transformer": "get_ipython().input_transformers_post.append(lambda lines: [])",
    "excepthook": "import sys\nsys.excepthook = print",
    "alias of a module": "c = vitsteps.checks\nc.check = print",
    "patch torch": "torch.allclose = lambda *a, **k: True",
    "patch inside a function": "def f(x):\n    torch.equal = lambda *a: True\n    return x",
    "global rebinding": "def f():\n    global check\n    check = print",
    "Tensor subclass": "class Fake(torch.Tensor):\n    pass",
    "frames": "def f():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
              "        return e.__traceback__",
    "cell history": "source = In[-1]",
    "private state": "vitsteps.checks._BATTERIES.clear()",
    "shell": "!rm -rf ~",
    "magic": "%%capture\nx = 1",
    "timed monkeypatch": "%timeit vitsteps.checks.check = print",
}
INNOCENT = {
    "imports and a helper": "import torch\nimport torch.nn.functional as F\nfrom torch import nn\nimport math\n\n"
                            "def helper(x):\n    y = x.clone()\n    y[:, 0] = 0\n    return y\n",
    "own objects": "model = nn.Linear(2, 2)\nmodel.weight.data[0] = 1\n"
                   "image = torch.randn(1, 3, 8, 8)\nimage[0, 0] = 0",
    "timing": "%timeit helper(torch.zeros(2, 2))",
    "a module class": "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                      "        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n        return self.fc(x)",
    "re-imports": "from vitsteps.checks import check\nimport vitsteps\nimport torch",
    "a syntax error": "def f(:\n    pass",
}


@pytest.mark.parametrize("code", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_is_found(code):
    assert sandbox.find_tampering({"cell 9": code}, PROTECTED, MODULES)


@pytest.mark.parametrize("code", INNOCENT.values(), ids=INNOCENT.keys())
def test_ordinary_student_code_is_not_tampering(code):
    assert sandbox.find_tampering({"cell 9": code}, PROTECTED, MODULES) == []


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.stem)
def test_the_reference_solutions_and_instructor_code_are_not_tampering(path):
    source = _read(path)
    tests = [c.source for c in source.cells if grading._is_test(c)]
    solutions = [c.source for c in source.cells if grading._is_solution(c)]
    others = [c.source for c in source.cells if c.cell_type == "code" and not grading._is_test(c)
              and not grading._is_solution(c)]
    protected, modules = sandbox.protected_names(tests, others, solutions)
    assert "check" in protected
    code = {f"cell {i}": text for i, text in enumerate(solutions + others)}
    assert sandbox.find_tampering(code, protected, modules) == []


# ------------------------------------------------------------------------------------------ the sandbox


@needs_bwrap
def test_the_sandbox_blocks_network_host_files_memory_and_floods(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    listener = _Listener()
    cells = [
        "import os, socket\n"
        "def attempt(action):\n"
        "    try:\n"
        "        action()\n"
        "        return 'done'\n"
        "    except Exception as error:\n"
        "        return type(error).__name__\n"
        f"print('read', attempt(lambda: open({str(secret)!r}).read()))\n"
        f"print('write', attempt(lambda: open({str(secret)!r}, 'w').write('x')))\n"
        "print('root', attempt(lambda: open('/planted.txt', 'w').write('x')))\n"
        f"print('loopback', attempt(lambda: socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)))\n"
        "print('internet', attempt(lambda: socket.create_connection(('1.1.1.1', 80), timeout=2)))\n"
        "print('scratch', attempt(lambda: open('mine.txt', 'w').write('x')))",
        "buffer = bytearray(3 * 1024 ** 3)",
        "print('x' * 100_000)\nprint('y' * 100_000)",
        "while True:\n    pass",
        "print('still alive')",
        "import os\nos.kill(os.getpid(), 9)",
        "print('never')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    try:
        run = sandbox.execute(notebook, sandbox.Limits(cell_timeout=3, notebook_timeout=30, memory_mb=1024,
                                                       cell_output_kb=64))
    finally:
        listener.close()
    printed = "".join(o.get("text", "") for o in run.notebook.cells[0].outputs)
    assert "read FileNotFoundError" in printed and "write " in printed and "write done" not in printed
    assert "root OSError" in printed and "scratch done" in printed
    assert "loopback ConnectionRefusedError" in printed and "internet done" not in printed
    assert listener.connections == 0 and secret.read_text() == "host data"
    assert run.notebook.cells[1].outputs[0]["ename"] == "MemoryError"
    assert run.truncated == [2]
    assert run.timed_out == [3] and run.status[3] == "error"
    assert run.notebook.cells[4].outputs[0]["text"] == "still alive\n"
    assert run.stopped.startswith("the kernel died") and run.stopped_at == 5 and 6 not in run.status


@needs_bwrap
def test_a_loop_that_ignores_the_interrupt_is_stopped():
    loop = STUBBORN_LOOP
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in ["x = 1", loop, "x = 2"]])
    run = sandbox.execute(notebook, sandbox.Limits(cell_timeout=1, notebook_timeout=20))
    assert run.timed_out == [1] and "ignored the interrupt" in run.stopped and 2 not in run.status


@needs_bwrap
def test_a_kernel_that_fills_its_scratch_folder_is_stopped():
    fill = ("import time\nfor index in range(40):\n    with open(f'junk{index}', 'wb') as junk:\n"
            "        junk.write(bytes(1024 ** 2))\n    time.sleep(0.05)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [fill, "x = 2"]])
    run = sandbox.execute(notebook, sandbox.Limits(cell_timeout=20, notebook_timeout=30, disk_mb=8))
    assert "wrote more than 8 MiB" in run.stopped and run.stopped_at == 0 and 1 not in run.status


def test_autograde_refuses_to_run_unsandboxed_without_being_told(tmp_path, monkeypatch, capsys):
    course = tmp_path / "course"
    grading.release(course, [MINI])
    _submit(course, "alice", MINI, _solved(_read(MINI)))
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert grading.main(["autograde", "--course", str(course)]) == 2
    message = capsys.readouterr().err
    assert "bubblewrap" in message and "--no-sandbox" in message and "apt-get install -y bubblewrap" in message
    assert not (course / "grades.csv").exists()
    assert grading.main(["autograde", "--course", str(course), "--no-sandbox", "--cell-timeout", "20"]) == 0
    assert _rows(course)["alice"]["points"] == "3"


def test_missing_unreadable_and_exercise_free_submissions_get_a_row_and_a_reason(tmp_path):
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Overview"),
                                            nbformat.v4.new_code_cell("print('no exercises here')")],
                                     metadata=_read(MINI).metadata)
    overview = tmp_path / "00_plain.ipynb"
    nbformat.write(plain, overview)
    course = tmp_path / "course"
    grading.release(course, [overview, MINI])
    _submit(course, "alice", overview, plain)
    (course / "submitted" / "bob" / "grading_mini").mkdir(parents=True)
    (course / "submitted" / "carol" / "grading_mini").mkdir(parents=True)
    (course / "submitted" / "carol" / "grading_mini" / "grading_mini.ipynb").write_text("{ not json")
    (course / "submitted" / "dave" / "no_such_assignment").mkdir(parents=True)
    grading.autograde(course, QUICK, use_sandbox=False, quiet=True)
    rows = _rows(course)
    assert (rows["alice"]["max_points"], rows["alice"]["reason"]) == (
        "0", "not run: this assignment has no graded exercises")
    assert (rows["bob"]["points"], rows["bob"]["max_points"], rows["bob"]["reason"]) == (
        "0", "3", "no notebook submitted")
    assert rows["carol"]["reason"].startswith("unreadable notebook")
    assert rows["dave"]["reason"].startswith("no assignment 'no_such_assignment'")


# ------------------------------------------------------------------------------------------ end to end


@needs_bwrap
def test_autograde_grades_correct_partial_and_hostile_submissions_and_contains_them(tmp_path):
    course, outside = tmp_path / "course", tmp_path / "outside.txt"
    outside.write_text("untouched")
    grading.release(course, [MINI])
    source = _read(MINI)
    count_index = _index_of(_solved(source), "exmini_count")
    submissions = {
        "alice": _solved(source),
        "bob": _solved(source, {"exmini_head": "def head_dim(embed_dim, num_heads):\n    return num_heads"}),
        "carol": grading.student_version(source),
        "looper": _solved(source, {"exmini_head": STUBBORN_LOOP}),
        "hog": _solved(source, {"exmini_head": "def head_dim(embed_dim, num_heads):\n"
                                               "    buffer = bytearray(3 * 1024 ** 3)\n"
                                               "    return embed_dim // num_heads"}),
        "crasher": _insert_after(_solved(source), _index_of(_solved(source), "exmini_count_test"),
                                 "import os\nos.kill(os.getpid(), 9)"),
        "tamperer": _insert_after(_solved(source, {"exmini_count": "def count_patches(a, b):\n    return 0"}),
                                  count_index, "import builtins\nbuiltins.AssertionError = ZeroDivisionError"),
    }
    bob = submissions["bob"]  # partly wrong, and he edited one test cell and deleted the other
    bob.cells[_index_of(bob, "exmini_count_test")].source = "pass"
    del bob.cells[_index_of(bob, "exmini_head_test")]
    for student, notebook in submissions.items():
        _submit(course, student, MINI, notebook)
    listener = _Listener()
    alice_notebook = course / "submitted" / "alice" / "grading_mini" / "grading_mini.ipynb"
    vandalism = (
        "import os, shutil, socket\n"
        "results = {}\n"
        "for name, action in [\n"
        f"        ('gradebook', lambda: open({str(course / 'grades.csv')!r}, 'w').write('vandal,99')),\n"
        f"        ('other student', lambda: open({str(alice_notebook)!r}, 'w')),\n"
        f"        ('source', lambda: shutil.rmtree({str(course / 'source')!r})),\n"
        f"        ('outside', lambda: open({str(outside)!r}, 'w').write('changed')),\n"
        f"        ('network', lambda: socket.create_connection(('127.0.0.1', {listener.port}), timeout=2))]:\n"
        "    try:\n"
        "        action()\n"
        "        results[name] = 'done'\n"
        "    except Exception as error:\n"
        "        results[name] = type(error).__name__\n"
        "print(sorted(results.items()))")
    _submit(course, "vandal", MINI, _insert_after(_solved(source), _first_code_index(source), vandalism))
    before = _digest(course)
    try:
        grades = grading.autograde(course, QUICK, jobs=2, quiet=True)
    finally:
        listener.close()
    rows = _rows(course)
    assert len(grades) == len(rows) == 8
    assert (rows["alice"]["points"], rows["alice"]["max_points"], rows["alice"]["reason"]) == ("3", "3", "")
    assert rows["alice"]["exercises"] == "exmini_count_test=2/2 exmini_head_test=1/1"
    assert (rows["bob"]["points"], rows["bob"]["exercises"]) == ("2", "exmini_count_test=2/2 exmini_head_test=0/1")
    assert "exmini_count_test was edited" in rows["bob"]["reason"]
    assert "exmini_head_test was deleted" in rows["bob"]["reason"]
    assert rows["carol"]["points"] == "0"
    assert rows["looper"]["points"] == "2" and "timed out" in rows["looper"]["reason"]
    assert "ignored the interrupt" in rows["looper"]["reason"]
    assert rows["hog"]["points"] == "2" and "out of memory (limit 1024 MiB) in cell 8 (exmini_head_test)" \
        in rows["hog"]["reason"]
    assert rows["crasher"]["points"] == "2" and "kernel died" in rows["crasher"]["reason"]
    assert rows["tamperer"]["points"] == "0" and rows["tamperer"]["reason"].startswith("tampering: ")
    assert rows["vandal"]["points"] == "3"
    graded = _read(course / "autograded" / "vandal" / "grading_mini" / "grading_mini.ipynb")
    printed = next(o["text"] for c in graded.cells if "results = {}" in c.source for o in c.outputs)
    assert "'done'" not in printed and "('network', 'ConnectionRefusedError')" in printed
    assert listener.connections == 0 and outside.read_text() == "untouched"
    after = _digest(course)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing submitted or released changed
    assert all(re.match(r"(autograded|feedback)/|grades\.csv$", path) for path in set(after) - set(before))
    feedback = (course / "feedback" / "bob" / "grading_mini" / "grading_mini.html").read_text()
    assert "exmini_head_test: 0 / 1 points" in feedback and "2 / 3 points" in feedback
    assert "head_dim(768, 12)" not in feedback and "hidden tests ran here" in feedback


@needs_bwrap
@pytest.mark.skipif(not REAL.exists(), reason="notebooks/01_patches_unfold.ipynb is not written yet")
def test_autograde_on_a_real_notebook(tmp_path):
    course = tmp_path / "course"
    grading.release(course, [REAL])
    source = _read(REAL)
    solved = _solved(source)
    stripes = ("def image2emb_naive(image, patch_size, weight):\n"
               "    B, C, H, W = image.shape\n"
               "    return image.reshape(B, -1, C * patch_size ** 2) @ weight")
    _submit(course, "alice", REAL, solved)
    _submit(course, "bob", REAL, _solved(source, {"ex01_image2emb": stripes}))
    _submit(course, "mallory", REAL, _insert_after(solved, -1, "import os\nos.kill(os.getpid(), 9)"))
    patched = _solved(source, {"ex01_image2emb": stripes})
    _submit(course, "trudy", REAL, _insert_after(patched, _first_code_index(patched),
                                                "import vitsteps.checks\n"
                                                "vitsteps.checks.check = lambda *args, **kwargs: True"))
    submitted = _digest(course / "submitted")
    grading.autograde(course, sandbox.Limits(cell_timeout=60, notebook_timeout=120), jobs=2, quiet=True)
    rows = _rows(course)
    tests = [c for c in source.cells if grading._is_test(c)]
    total = sum(grading._points(c) for c in tests)
    image2emb = grading._points(next(c for c in tests if _grade_id(c) == "ex01_image2emb_test"))
    assert float(rows["alice"]["points"]) == total and rows["alice"]["reason"] == ""
    assert float(rows["bob"]["points"]) == total - image2emb
    assert rows["mallory"]["points"] == "0" and "kernel died" in rows["mallory"]["reason"]
    assert rows["trudy"]["points"] == "0" and "vitsteps.checks.check" in rows["trudy"]["reason"]
    assert _digest(course / "submitted") == submitted
    assert (course / "feedback" / "alice" / REAL.stem / f"{REAL.stem}.html").is_file()
