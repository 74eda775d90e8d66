"""Student versions, assembly, the static scan, the verdict outside the sandbox, nbgrader's gradebook, and autograding
end to end: correct, partly wrong and hostile submissions, one of our own for each attack class."""
from __future__ import annotations

import ast
import copy
import csv
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
import torch

# CI sets VITSTEPS_REQUIRE_SANDBOX=1: there a missing nbgrader or bubblewrap fails the tests instead of skipping them.
REQUIRE_SANDBOX = os.environ.get("VITSTEPS_REQUIRE_SANDBOX") == "1"
if not REQUIRE_SANDBOX:
    pytest.importorskip("nbgrader", reason="the instructor tools (vitcourse, nbgrader) are not installed")

from vitcourse import grading  # noqa: E402
from vitcourse.confine import sandbox  # noqa: E402
from vitcourse.course import gradebook  # noqa: E402
from vitcourse.course.release import release, student_version  # noqa: E402
from vitcourse.course.settings import course_settings  # noqa: E402
from vitcourse.course.submissions import find_submissions, write_grades  # noqa: E402
from vitcourse.inside import wire  # noqa: E402
from vitcourse.judge import scan  # noqa: E402
from vitcourse.judge import verdict as judge  # noqa: E402
from vitcourse.judge.cells import cell_points, is_solution, is_test  # noqa: E402
from vitcourse.judge.feedback import feedback_html  # noqa: E402
from vitcourse.judge.grade import Grade, Settings, assemble, exercise_map  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MINI = Path(__file__).parent / "fixtures" / "grading_mini.ipynb"
TABLE = str(Path(__file__).parent / "fixtures" / "exercises.py")
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # every one holds a graded exercise
REAL = REPO / "notebooks" / "01_patches_unfold.ipynb"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None and not REQUIRE_SANDBOX,
                                 reason="bubblewrap is not installed (apt-get install -y bubblewrap)")
# An endless loop that swallows the interrupt (the signal lands inside the inner loop, within the try).
STUBBORN_LOOP = ("while True:\n    try:\n        while True:\n            pass\n"
                 "    except KeyboardInterrupt:\n        pass")
QUICK = sandbox.Limits(cell_timeout=8, notebook_timeout=90, memory_mb=512, processes=32, disk_mb=64, output_kb=1024)
SETTINGS = Settings(exercises=TABLE)
SECRET_ENV, SECRET = "VITCOURSE_TEST_SECRET", "grader-only-" + os.urandom(8).hex()


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
    notebook = student_version(source)
    solutions = {_grade_id(c): _without_delimiters(c.source) for c in source.cells if is_solution(c)}
    for cell in notebook.cells:
        grade_id = _grade_id(cell)
        if grade_id in solutions:
            cell.source = answers.get(grade_id, solutions[grade_id])
    return notebook


def _insert_after(notebook: nbformat.NotebookNode, grade_id: str | None, code: str) -> nbformat.NotebookNode:
    """A copy with a student cell after the cell of `grade_id` (None: after the first code cell)."""
    notebook = copy.deepcopy(notebook)
    index = next(i for i, cell in enumerate(notebook.cells)
                 if (_grade_id(cell) == grade_id if grade_id else cell.cell_type == "code"))
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return notebook


def _index_of(notebook: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if _grade_id(cell) == grade_id)


def _submit(course: Path, student: str, source_path: Path, notebook: nbformat.NotebookNode) -> Path:
    folder = course / "submitted" / student / source_path.stem
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / source_path.name)
    return folder / source_path.name


def _digest(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()}


def _rows(course: Path) -> dict[str, dict[str, str]]:
    with (course / "grades.csv").open(encoding="utf-8") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------------------ student versions


@pytest.mark.parametrize("path", NOTEBOOKS + [MINI], ids=lambda p: p.stem)
def test_student_version_has_stubs_no_hidden_tests_and_no_outputs(path):
    source = _read(path)
    student = student_version(source)
    text = nbformat.writes(student)
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert all(not cell.get("outputs") for cell in student.cells if cell.cell_type == "code")
    assert "widgets" not in student.metadata
    assert [_grade_id(c) for c in student.cells] == [_grade_id(c) for c in source.cells]
    assert [c.get("id") for c in student.cells] == [c.get("id") for c in source.cells]
    for cell in student.cells:
        if is_solution(cell):
            assert "raise NotImplementedError()" in cell.source and cell.metadata.get("editable", True)
        if is_test(cell):
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False


def _imports_of(notebook: nbformat.NotebookNode) -> str:
    lines = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or is_solution(cell) or is_test(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        lines += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


@pytest.mark.parametrize("path", NOTEBOOKS + [MINI], ids=lambda p: p.stem)
def test_a_stub_never_passes_its_visible_test(path):
    source = _read(path)
    student = student_version(source)
    solutions = [c for c in student.cells if is_solution(c)]
    visible = [c.source for c in student.cells if is_test(c)]
    assert solutions and visible
    namespace: dict = {}
    exec(_imports_of(source), namespace)  # noqa: S102 - the notebook's own imports
    for cell in solutions:
        exec(cell.source, namespace)  # noqa: S102 - the generated stub
    for test_source in visible:
        first_statement = ast.unparse(ast.parse(test_source).body[0])
        with pytest.raises((AssertionError, NotImplementedError)):  # the self-check's CheckFailed is an AssertionError
            exec(first_statement, namespace)  # noqa: S102


def test_make_student_writes_source_release_config_and_registers_the_gradebook(tmp_path, capsys):
    overview = REPO / "notebooks" / "00_overview.ipynb"
    paths = [overview, MINI] if overview.exists() else [MINI]
    assert grading.main(["student", "--course", str(tmp_path / "course"), "--exercises", TABLE,
                         *map(str, paths)]) == 0
    course = tmp_path / "course"
    for path in paths:
        assert (course / "source" / path.stem / path.name).read_bytes() == path.read_bytes()
        assert (course / "release" / path.stem / path.name).is_file()
    assert (course / "nbgrader_config.py").is_file() and (course / "submitted").is_dir()
    printed = capsys.readouterr()
    assert "grading_mini: 3 graded test cells" in printed.out and "warning" not in printed.err
    from nbgrader.api import Gradebook

    with Gradebook(gradebook.db_url(course), gradebook.course_id(course)) as book:
        cells = {cell.name: cell.max_score for cell in book.find_notebook("grading_mini", "grading_mini").grade_cells}
        assert cells == {"exmini_count_test": 2.0, "exmini_head_test": 1.0, "exmini_patches_test": 2.0}
        assert {assignment.name for assignment in book.assignments} >= {"grading_mini"}


def test_make_student_warns_about_a_test_cell_without_an_exercise(tmp_path, capsys):
    assert grading.main(["student", "--course", str(tmp_path / "course"), "--exercises",
                         str(tmp_path / "missing.py"), str(MINI)]) == 0
    assert "cannot be imported" in capsys.readouterr().err


def test_make_student_refuses_a_path_that_is_not_a_notebook(tmp_path):
    with pytest.raises(SystemExit):
        grading.main(["student", "--course", str(tmp_path / "course"), str(tmp_path / "missing.ipynb")])


def test_make_student_names_the_notebook_whose_solution_lacks_metadata(tmp_path, capsys):
    broken = _read(MINI)
    broken.cells[_index_of(broken, "exmini_count")].metadata.pop("nbgrader")
    path = tmp_path / "broken.ipynb"
    nbformat.write(broken, path)
    with pytest.raises(SystemExit):
        grading.main(["student", "--course", str(tmp_path / "course"), "--exercises", TABLE, str(path)])
    assert "broken.ipynb" in capsys.readouterr().err


def test_the_course_tools_use_only_public_vitsteps_names_and_no_developer_tools():
    package = Path(grading.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found += [(path.name, node.module, alias.name) for alias in node.names]
    from_vitsteps = [(where, module, name) for where, module, name in found if module.split(".")[0] == "vitsteps"]
    assert from_vitsteps, "the grader reads ViTConfig from vitsteps"
    for where, module, name in from_vitsteps:
        assert not any(part.startswith("_") for part in module.split(".") + [name or ""]), (where, module, name)
    developer = {"pytest", "hypothesis", "transformers", "playwright", "nbval", "ruff"}
    assert not [entry for entry in found if entry[1].split(".")[0] in developer]


# ------------------------------------------------------------------------------------------ settings


def test_course_settings_come_from_the_course_config(tmp_path):
    assert course_settings(tmp_path) == Settings()
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.VitCourse.flagged_credit = 0.5\n"
                                                 f"c.VitCourse.exercises = {TABLE!r}\n")
    assert course_settings(tmp_path) == Settings(exercises=TABLE, flagged_credit=0.5)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.VitCourse.credit = 1\n")
    with pytest.raises(ValueError, match="c.VitCourse has no setting 'credit'"):
        course_settings(tmp_path)


@pytest.mark.parametrize("fields, message", [
    ({"flagged_credit": 2}, "flagged_credit must be a number from 0 to 1, got 2"),
    ({"flagged_credit": True}, "flagged_credit must be a number from 0 to 1, got True"),
    ({"exercises": ""}, "exercises must name a module or a .py file"),
])
def test_bad_settings_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        Settings(**fields)


def test_an_exercise_table_that_breaks_the_contract_is_refused(tmp_path):
    broken = tmp_path / "table.py"
    broken.write_text("EXERCISES = {}\n")
    with pytest.raises(judge.TableUnavailable, match="no EXERCISES dict or no verdict function"):
        judge.load_table(str(broken))
    with pytest.raises(judge.TableUnavailable, match="cannot be imported"):
        judge.load_table("vitcourse_no_such_table")


# ------------------------------------------------------------------------------------------ assembling


def test_assembly_restores_edited_and_deleted_tests_keeps_added_cells_and_drops_hidden_tests():
    source = _read(MINI)
    released = student_version(source)
    student = _solved(source)
    student.cells[_index_of(student, "exmini_count_test")].source = "pass"
    del student.cells[_index_of(student, "exmini_head_test")]
    student = _insert_after(student, "exmini_count", "helper = 1")
    fake = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {"grade": True, "grade_id": "mine", "points": 99,
                                                                     "locked": True, "solution": False}})
    student.cells.append(fake)
    assembled = assemble(source, released, student)
    sources = [cell.source for cell in assembled.notebook.cells]
    assert "assert count_patches(8, 4) == 4" in sources and "assert head_dim(8, 8) == 1" in sources
    assert not any("HIDDEN" in text or "224, 16" in text or "768, 12" in text for text in sources)
    assert sources.index("helper = 1") == sources.index(next(s for s in sources if "def count_patches" in s)) + 1
    assert "test cell exmini_count_test was edited (the original was used)" in assembled.notes
    assert "test cell exmini_head_test was deleted (restored for grading)" in assembled.notes
    assert sum(is_test(cell) for cell in assembled.notebook.cells) == 3  # the fake test cell earns nothing
    assert "return (image_size // patch_size) ** 2" in sources[_index_of(source, "exmini_count")]


def test_each_test_cell_maps_to_the_exercise_of_its_solution_cell():
    table = judge.load_table(TABLE)
    mapping = exercise_map(_read(MINI), "grading_mini", table)
    assert {grade_id: exercise.name for grade_id, exercise in mapping.items()} == {
        "exmini_count_test": "count_patches", "exmini_head_test": "head_dim", "exmini_patches_test": "patchify"}
    assert set(exercise_map(_read(MINI), "another_notebook", table).values()) == {None}


# ------------------------------------------------------------------------------------------ the static scan


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
    "a subprocess": "import subprocess\nsubprocess.run(['true'])",
    "a fork": "import os\nos.fork()",
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
    assert scan.find_tampering({"cell 9": code}, PROTECTED, MODULES)


@pytest.mark.parametrize("code", INNOCENT.values(), ids=INNOCENT.keys())
def test_ordinary_student_code_is_not_tampering(code):
    assert scan.find_tampering({"cell 9": code}, PROTECTED, MODULES) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_reference_solutions_and_instructor_code_are_not_tampering(path):
    source = _read(path)
    tests = [c.source for c in source.cells if is_test(c)]
    solutions = [c.source for c in source.cells if is_solution(c)]
    others = [c.source for c in source.cells if c.cell_type == "code" and not is_test(c)
              and not is_solution(c)]
    protected, modules = scan.protected_names(tests, others, solutions)
    assert "check" in protected
    code = {f"cell {i}": text for i, text in enumerate(solutions + others)}
    assert scan.find_tampering(code, protected, modules) == []


# ------------------------------------------------------------------------------------------ the verdict


class _LocalSession:
    """Stands in for a sandboxed session: calls Python functions here, with the same plain-data round trip."""

    def __init__(self, functions: dict) -> None:
        self.functions = functions
        self.last: tuple = ()

    def call(self, name, args, kwargs):
        function = self.functions.get(name)
        if function is None:
            return sandbox.Reply("missing")
        args = wire.decode(*wire.encode(tuple(args)))
        try:
            value = function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - as the executor reports it
            return sandbox.Reply("raised", ename=type(error).__name__)
        self.last = (args, value)
        try:
            return sandbox.Reply("returned", value=wire.decode(*wire.encode(value)),
                                 arguments=(wire.decode(*wire.encode(tuple(args))), dict(kwargs)))
        except wire.WireError:
            return sandbox.Reply("unreadable")

    def backward(self, weights, positions):
        args, value = self.last
        outputs = list(value) if isinstance(value, tuple) else [value]
        terms = [(output * weight).sum() for output, weight in zip(outputs, weights, strict=True)
                 if weight is not None and output.requires_grad]
        if terms:
            sum(terms).backward()
        return sandbox.Reply("returned", value=wire.decode(*wire.encode(tuple(args[p].grad for p in positions))))


def _patches(image, patch_size):
    B, C, H, W = image.shape
    blocks = image.reshape(B, C, H // patch_size, patch_size, W // patch_size, patch_size)
    return blocks.permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * patch_size ** 2)


class StudentError(Exception):
    pass


@pytest.mark.parametrize("function, expected", [
    (_patches, ""),
    (lambda image, patch_size: image.reshape(image.shape[0], -1, image.shape[1] * patch_size ** 2),
     "reshape alone on B=1, C=3, H=8, W=8, P=4: a reshape alone cuts stripes"),
    (lambda image, patch_size: _patches(image, patch_size).detach(), "no gradient reached argument 0"),
    (lambda image, patch_size: _patches(image.detach(), patch_size) + 0 * image.sum(),
     "the gradient of argument 0 is wrong"),
    (lambda image, patch_size: _patches(image, patch_size)[:, :1], "expected shape [1, 4, 48], got [1, 1, 48]"),
    (lambda image, patch_size: {"not": "plain"}, "returned something the grader cannot read on case 1 of 3"),
    (lambda image, patch_size: 1 / 0, "`patchify` raised ZeroDivisionError on case 1 of 3"),
    (lambda image, patch_size: (_ for _ in ()).throw(StudentError(str(image))), "`patchify` raised an exception"),
], ids=["correct", "a classic mistake", "detached", "wrong gradient", "wrong shape", "unreadable", "builtin error",
        "own exception class"])
def test_the_grader_decides_from_plain_values_with_its_own_words(function, expected):
    table = judge.load_table(TABLE)
    outcome = judge.judge(_LocalSession({"patchify": function}), table, table.exercises["patchify"], seed=3)
    assert outcome.passed == (expected == "")
    assert expected in outcome.hint
    assert "tensor(" not in outcome.hint, "the hint never repeats the grader's inputs"


def _off_by_a_little(reference):
    def wrong(*args, **kwargs):
        value = reference(*args, **kwargs)
        if isinstance(value, tuple):
            return (value[0] * 1.01 + 0.01, *value[1:])
        return value * 1.01 + 0.01 if isinstance(value, torch.Tensor) else value + 1
    return wrong


COURSE_TABLE = judge.load_table(None)


@pytest.mark.parametrize("name", sorted(COURSE_TABLE.exercises))
def test_every_course_exercise_survives_the_round_trip_and_a_wrong_answer_does_not(name):
    exercise = COURSE_TABLE.exercises[name]
    right = judge.judge(_LocalSession({name: exercise.reference}), COURSE_TABLE, exercise, seed=11)
    assert right.passed, right.hint
    wrong = judge.judge(_LocalSession({name: _off_by_a_little(exercise.reference)}), COURSE_TABLE, exercise, seed=11)
    assert not wrong.passed and wrong.hint


def test_a_missing_function_is_named():
    table = judge.load_table(TABLE)
    outcome = judge.judge(_LocalSession({}), table, table.exercises["head_dim"], seed=0)
    assert not outcome.passed and outcome.hint == "`head_dim` is not defined when its test cell runs."


def test_cases_are_new_for_each_run_and_student():
    seeds = {judge.case_seed(secret, student, "grading_mini", "head_dim")
             for secret in (b"run one", b"run two") for student in ("alice", "bob")}
    assert len(seeds) == 4


def test_a_copy_of_the_package_reference_is_recognised_whatever_its_names():
    import inspect

    import vitsteps.patches

    table = judge.load_table(TABLE)
    reference = inspect.getsource(vitsteps.patches.image_to_patches)
    renamed = (reference.replace("def image_to_patches", "def patchify").replace("image", "picture")
               .replace("columns", "cols").replace('"""', '"""Mine. ', 1))
    assert judge.copied_reference(renamed, table.exercises["patchify"]) == "vitsteps.patches.image_to_patches"
    own = "def patchify(image, patch_size):\n" + "\n".join(
        "    " + line for line in inspect.getsource(_patches).splitlines()[1:])
    assert judge.copied_reference(own, table.exercises["patchify"]) is None


# ------------------------------------------------------------------------------------------ submission folders


def test_every_entry_under_submitted_gets_a_row_saying_why(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "grading_mini").mkdir(parents=True)
    shutil.copyfile(MINI, course / "source" / "grading_mini" / MINI.name)
    submitted = course / "submitted"
    good = submitted / "alice" / "grading_mini"
    good.mkdir(parents=True)
    shutil.copyfile(MINI, good / MINI.name)
    (submitted / ".hidden" / "grading_mini").mkdir(parents=True)
    (submitted / "linked").symlink_to(submitted / "alice")
    (submitted / "odd name!" / "grading_mini").mkdir(parents=True)
    (submitted / "notes.txt").write_text("x")
    (submitted / "empty").mkdir()
    (submitted / "carol").mkdir()
    (submitted / "carol" / "grading_mini").symlink_to(good)
    (submitted / "dave" / "grading_mini").mkdir(parents=True)
    (submitted / "dave" / "grading_mini" / MINI.name).symlink_to(good / MINI.name)
    (submitted / "erin" / "no_such_assignment").mkdir(parents=True)
    os.mkdir(os.path.join(os.fsencode(submitted), b"bytes\xff\x01"))
    submissions, decided = find_submissions(course)
    assert [(s.student, s.assignment) for s in submissions] == [("alice", "grading_mini")]
    reasons = {grade.student: grade.row()["reason"] for grade in decided}
    assert reasons[".hidden"] == "refused: the student folder's name starts with a dot"
    assert reasons["linked"] == "refused: the student folder is a symbolic link"
    assert reasons["odd name!"].startswith("refused: unusual characters in the student folder's name")
    assert reasons["notes.txt"] == "refused: 'notes.txt' is a file, not a student folder"
    assert reasons["empty"] == "refused: the student folder is empty"
    assert reasons["carol"] == "refused: the assignment folder is a symbolic link"
    assert reasons["dave"] == "refused: the notebook is a symbolic link"
    assert reasons["erin"].startswith("no assignment 'no_such_assignment'")
    assert reasons["bytes\\udcff\\x01"].startswith("refused: unusual characters")
    assert len(decided) == 9
    write_grades(course, decided)  # odd names still make a valid CSV
    assert len(_rows(course)) == 9


def test_feedback_never_shows_test_code_or_outputs_after_the_first_graded_test():
    source = _read(MINI)
    notebook = assemble(source, student_version(source), _solved(source)).notebook
    first_test = _index_of(notebook, "exmini_count_test")
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"printed by cell {index}\n")]
    notebook.cells[-2].outputs = []  # as grade_notebook leaves them after the first graded test
    notebook.metadata["vitcourse"] = {"outputs_kept_until_cell": first_test + 1}
    grade = Grade("alice", "grading_mini", MINI.name, points=2, max_points=5,
                          exercises={"exmini_count_test": (2.0, 2.0), "exmini_head_test": (0.0, 1.0),
                                     "exmini_patches_test": (0.0, 2.0)},
                          verdicts={"exmini_head_test": "expected 4, got 2 on embed_dim=8, num_heads=2"})
    page = feedback_html(notebook, grade)
    assert "assert count_patches" not in page and "assert head_dim" not in page
    assert f"printed by cell {first_test}" not in page, "a test cell is replaced by the grader's verdict"
    assert "printed by cell 1" in page and "expected 4, got 2 on embed_dim=8, num_heads=2" in page
    assert "exmini_head_test: 0 / 1 points" in page and "2 / 5 points" in page


# ------------------------------------------------------------------------------------------ without the sandbox


def _integers_only() -> nbformat.NotebookNode:
    """The mini notebook without its tensor exercise: a warm interpreter without torch starts fast."""
    notebook = _read(MINI)
    notebook.cells = [cell for cell in notebook.cells if "patches" not in (_grade_id(cell) or "")]
    notebook.cells[1].source = "import math\n\nprint(math.isqrt(16))"
    return notebook


def test_autograde_refuses_to_run_unsandboxed_without_being_told(tmp_path, monkeypatch, capsys):
    course = tmp_path / "course"
    path = tmp_path / MINI.name
    nbformat.write(_integers_only(), path)
    release(course, [path], TABLE)
    deep = "import os\nfor _ in range(50):\n    os.mkdir('d')\n    os.chdir('d')\nos.chmod('.', 0)"
    _submit(course, "alice", path, _insert_after(_solved(_read(path)), None, deep))
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert grading.main(["autograde", "--course", str(course), "--exercises", TABLE]) == 2
    message = capsys.readouterr().err
    assert "bubblewrap" in message and "--no-sandbox" in message and "apt-get install -y bubblewrap" in message
    assert not (course / "grades.csv").exists()
    before = set(os.listdir(tempfile.gettempdir()))
    assert grading.main(["autograde", "--course", str(course), "--no-sandbox", "--exercises", TABLE,
                         "--cell-timeout", "20"]) == 0
    assert _rows(course)["alice"]["points"] == "3"
    assert not any(name.startswith("vitcourse") for name in set(os.listdir(tempfile.gettempdir())) - before)


# ------------------------------------------------------------------------------------------ end to end


def _attack(source: nbformat.NotebookNode, answers: dict[str, str], after: str | None, code: str):
    return _insert_after(_solved(source, answers), after, code)


WRONG_COUNT = {"exmini_count": "def count_patches(image_size, patch_size):\n    return 0"}
WRONG_HEAD = {"exmini_head": "def head_dim(embed_dim, num_heads):\n    return num_heads"}
ZERO_PATCHES = {"exmini_patches": "def patchify(image, patch_size):\n"
                                  "    B, C, H, W = image.shape\n"
                                  "    N = (H // patch_size) * (W // patch_size)\n"
                                  "    return torch.zeros(B, N, C * patch_size ** 2)"}
KEYFILE = Path(judge.__file__).with_name("references.py")  # the answer key, on the grader's side
SNOOP = ("import os\n"
         "def attempt(action):\n"
         "    try:\n        return action()\n    except Exception as error:\n        return type(error).__name__\n"
         "print('env', sorted(os.environ.items()))\n"
         "print('pid1', attempt(lambda: open('/proc/1/environ', 'rb').read()))\n"
         "print('proc', sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
         "print('source', attempt(lambda: open({source!r}).read()))\n"
         "print('course', attempt(lambda: os.listdir({course!r})))\n"
         "def key():\n    import vitcourse.judge.references\n    return 'imported'\n"
         "def inside():\n    import vitcourse.inside.wire\n    return 'imported'\n"
         "print('key', attempt(key))\nprint('keyfile', attempt(lambda: open({keyfile!r}).read()[:9]))\n"
         "print('inside', attempt(inside))")
STASH = ("seen = []\n"
         "original = patchify\n"
         "def patchify(image, patch_size):\n"
         "    seen.append(repr(image.flatten()[:3].tolist()))\n"
         "    print('CALLED' + '-WITH', seen[-1])\n"
         "    return original(image, patch_size)")


MUTATOR = ("def patchify(image, patch_size):\n    B, C, H, W = image.shape\n    P = patch_size\n"
           "    blocks = image.detach().reshape(B, C, H // P, P, W // P, P)\n"
           "    out = blocks.permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * P * P).clone()\n"
           "    image.data.zero_()\n    return out")
# right answers to `patchify` through the routes it rules out (F.unfold, nn.Unfold, aten::im2col, the package's own
# function), by every door a student might try; each is closed before any student code runs in the graded run
_CUT = "(image, [patch_size, patch_size], [1, 1], [0, 0], [patch_size, patch_size]).transpose(1, 2)"
DOORS = {
    "alias": "from torch.nn.functional import unfold as cut\ndef patchify(image, patch_size):\n"
             "    return cut(image, patch_size, stride=patch_size).transpose(1, 2)",
    "getattr": "import torch.nn.functional as F\ndef patchify(image, patch_size):\n"
               "    return getattr(F, 'un' + 'fold')(image, patch_size, stride=patch_size).transpose(1, 2)",
    "importlib": "import importlib\ndef patchify(image, patch_size):\n"
                 "    F = importlib.import_module('torch.nn.' + 'functional')\n"
                 "    return F.unfold(image, patch_size, stride=patch_size).transpose(1, 2)",
    "reload": "import importlib\nimport torch.nn.functional as F\nF = importlib.reload(F)\n"
              "def patchify(image, patch_size):\n"
              "    return F.unfold(image, patch_size, stride=patch_size).transpose(1, 2)",
    "thread": "import threading\nimport torch.nn.functional as F\ndef patchify(image, patch_size):\n    out = []\n"
              "    cut = lambda: out.append(F.unfold(image, patch_size, stride=patch_size))\n"
              "    worker = threading.Thread(target=cut)\n"
              "    worker.start()\n    worker.join()\n    return out[0].transpose(1, 2)",
    "code": "import types\nimport torch.nn.functional as F\n"
            "cut = types.FunctionType(F.unfold.__code__, F.unfold.__globals__)\n"
            "def patchify(image, patch_size):\n    return cut(image, patch_size, stride=patch_size).transpose(1, 2)",
    "aten": "import torch\ndef patchify(image, patch_size):\n    return torch.ops.aten.im2col" + _CUT,
    "c": "import torch\ndef patchify(image, patch_size):\n    return torch._C._nn.im2col" + _CUT,
    "script": "import torch\n@torch.jit.script\ndef cut(image: torch.Tensor, p: int) -> torch.Tensor:\n"
              "    return torch.ops.aten.im2col(image, [p, p], [1, 1], [0, 0], [p, p])\n"
              "def patchify(image, patch_size):\n    return cut(image, patch_size).transpose(1, 2)",
    "stage": "import vitsteps\ndef patchify(image, patch_size):\n"
             "    return getattr(vitsteps.patches, 'image_to_' + 'patches')(image, patch_size)",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One course, one autograde run: every kind of submission below, graded once for the tests that follow."""
    if shutil.which("bwrap") is None and not REQUIRE_SANDBOX:
        pytest.skip("bubblewrap is not installed")
    root = tmp_path_factory.mktemp("graded")
    course, outside = root / "course", root / "outside.txt"
    outside.write_text("untouched")
    release(course, [MINI], TABLE)
    source = _read(MINI)
    source_copy = str(course / "source" / "grading_mini" / MINI.name)
    bob = _solved(source, WRONG_HEAD)  # partly wrong, and he edited one test cell and deleted another
    bob.cells[_index_of(bob, "exmini_count_test")].source = "pass"
    del bob.cells[_index_of(bob, "exmini_head_test")]
    vandalism = (
        "import os, shutil, socket\n"
        "results = {}\n"
        "for name, action in [\n"
        f"        ('gradebook', lambda: open({str(course / 'grades.csv')!r}, 'w').write('vandal,99')),\n"
        f"        ('database', lambda: open({str(course / 'gradebook.db')!r}, 'w')),\n"
        f"        ('other student', lambda: open({str(course / 'submitted/alice/grading_mini/grading_mini.ipynb')!r},"
        " 'w')),\n"
        f"        ('source', lambda: shutil.rmtree({str(course / 'source')!r})),\n"
        f"        ('outside', lambda: open({str(outside)!r}, 'w').write('changed'))]:\n"
        "    try:\n"
        "        action()\n"
        "        results[name] = 'done'\n"
        "    except Exception as error:\n"
        "        results[name] = type(error).__name__\n"
        "print(sorted(results.items()))")
    flood = ("print('x' * 1_100_000)\nhandle = display('start', display_id=True)\n"
             "for _ in range(10_000):\n    handle.update('y' * 1000)")
    submissions = {
        "alice": _solved(source),
        "bob": bob,
        "carol": student_version(source),
        "looper": _solved(source, {"exmini_head": STUBBORN_LOOP}),
        "hog": _solved(source, {"exmini_head": "def head_dim(embed_dim, num_heads):\n"
                                               "    buffer = bytearray(3 * 1024 ** 3)\n"
                                               "    return embed_dim // num_heads"}),
        "crasher": _insert_after(_solved(source), "exmini_count_test", "import os\nos.kill(os.getpid(), 9)"),
        "sleeper": _insert_after(_solved(source), "exmini_count_test", "while True:\n    pass"),
        "flooder": _insert_after(_solved(source), "exmini_count_test", flood),
        "vandal": _insert_after(_solved(source), None, vandalism),
        "snoop": _insert_after(_insert_after(_insert_after(
            _solved(source), None, SNOOP.format(source=source_copy, course=str(course),
                                           keyfile=str(KEYFILE))), "exmini_patches", STASH),
            "exmini_patches_test", "print('STASH' + 'ED', seen)"),
        # attacks on the checking machinery, each with wrong answers: none may score
        "aliases": _attack(source, ZERO_PATCHES, None,
                           "alias = torch\nsetter = setattr\nfor name in ('equal', 'allclose'):\n"
                           "    setter(alias, name, lambda *a, **k: True)"),
        "hooks": _attack(source, WRONG_COUNT, None,
                         "shell = get_ipython()\nshell.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                         "shell.events.register('post_run_cell', lambda *a: None)"),
        "transformer": _attack(source, WRONG_HEAD, "exmini_head",
                               "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"),
        "subclass": _attack(source, ZERO_PATCHES, "exmini_patches",
                            "Fake = type('Fake', (torch.Tensor,), {'__eq__': lambda a, b: True,\n"
                            "    '__torch_function__': classmethod(lambda cls, f, t, a=(), k=None: True)})\n"
                            "wrong = patchify\n"
                            "def patchify(image, patch_size):\n"
                            "    return wrong(image, patch_size).as_subclass(Fake)"),
        "modules": _attack(source, WRONG_COUNT, None,
                           "import sys\nsys.modules['torch'].allclose = lambda *a, **k: True\n"
                           "sys.modules['builtins'].AssertionError = ZeroDivisionError"),
        # correct answers reached in ways the exercise does not allow: flagged, no points (flagged_credit 0)
        "reference": _solved(source, {"exmini_patches": "from vitsteps.patches import image_to_patches as solver\n"
                                                        "def patchify(image, patch_size):\n"
                                                        "    return solver(image, patch_size)"}),
        "untracer": _solved(source, {"exmini_head": "import sys\n"
                                                   "def head_dim(embed_dim, num_heads):\n"
                                                   "    sys.setprofile(None)\n"
                                                   "    return embed_dim // num_heads"}),
        "forbidden": _solved(source, {"exmini_patches": "import torch.nn.functional as F\n"
                                                        "cut = F.unfold\n"
                                                        "def patchify(image, patch_size):\n"
                                                        "    return cut(image, patch_size, stride=patch_size)"
                                                        ".transpose(1, 2)"}),
        **{f"door_{door}": _solved(source, {"exmini_patches": code}) for door, code in DOORS.items()},
        # a right answer that overwrites its input: the grader compares the arguments it gets back
        "mutator": _solved(source, {"exmini_patches": MUTATOR}),
        "module": _solved(source, {"exmini_patches": "from torch import nn\n"
                                                     "def patchify(image, patch_size):\n"
                                                     "    cutter = nn.Unfold(patch_size, stride=patch_size)\n"
                                                     "    return cutter(image).transpose(1, 2)"}),
    }
    for student, notebook in submissions.items():
        _submit(course, student, MINI, notebook)
    if REAL.exists():  # the series' own notebook, graded in the same run: one warm interpreter for all
        release(course, [REAL], TABLE)
        real = _read(REAL)
        stripes = ("def image2emb_padded(image, patch_size, weight):\n"
                   "    B, C, H, W = image.shape\n"
                   "    return image.reshape(B, -1, C * patch_size ** 2) @ weight")
        _submit(course, "alice01", REAL, _solved(real))
        _submit(course, "trudy01", REAL, _insert_after(_solved(real, {"ex01_image2emb": stripes}), None,
                                                       "import vitsteps.teach.checks\n"
                                                       "vitsteps.teach.checks.check = lambda *args, **kwargs: True"))
    (course / "submitted" / ".hidden" / "grading_mini").mkdir(parents=True)
    (course / "submitted" / "linked").symlink_to(course / "submitted" / "alice")
    (course / "submitted" / "alice" / "grading_mini" / "timestamp.txt").write_text("2025-01-15 10:00:00.000000 UTC")
    (course / "submitted" / "alice" / "grading_mini" / "submission_secret.txt").write_text("as nbgrader collects it")
    before, submitted = _digest(course), _digest(course / "submitted")
    temporary = set(os.listdir(tempfile.gettempdir()))
    os.environ[SECRET_ENV] = SECRET
    try:
        grades = grading.autograde(course, QUICK, jobs=2, quiet=True, settings=SETTINGS)
    finally:
        del os.environ[SECRET_ENV]
    return {"course": course, "outside": outside, "grades": grades, "rows": _rows(course), "before": before,
            "submitted": submitted, "temporary": temporary, "source": source}


def _verdict(graded, student: str, grade_id: str) -> str:
    return next(g for g in graded["grades"] if g.student == student).verdicts[grade_id]


@needs_bwrap
def test_correct_partial_and_missing_work_is_graded_outside_the_sandbox(graded):
    rows = graded["rows"]
    assert (rows["alice"]["points"], rows["alice"]["max_points"], rows["alice"]["reason"]) == ("5", "5", "")
    assert rows["alice"]["exercises"] == "exmini_count_test=2/2 exmini_head_test=1/1 exmini_patches_test=2/2"
    assert (rows["bob"]["points"], rows["bob"]["exercises"]) == (
        "4", "exmini_count_test=2/2 exmini_head_test=0/1 exmini_patches_test=2/2")
    assert "exmini_count_test was edited" in rows["bob"]["reason"]
    assert "exmini_head_test was deleted" in rows["bob"]["reason"]
    assert re.fullmatch(r"expected \d+, got \d+ on embed_dim=\d+, num_heads=\d+", _verdict(graded, "bob",
                                                                                          "exmini_head_test"))
    assert rows["carol"]["points"] == "0"
    assert _verdict(graded, "carol", "exmini_count_test").startswith("`count_patches` raised NotImplementedError")


@needs_bwrap
def test_time_memory_crashes_and_floods_end_only_what_they_reach(graded):
    rows = graded["rows"]
    assert rows["sleeper"]["points"] == "5" and rows["sleeper"]["reason"] == "timed out: cell 6 (added by the " \
        "student) ran past 8 s", "an interrupted cell ends; the cells after it still run"
    # each exercise is judged in a run of its own: a cell that hangs costs only the exercise that needs it
    assert rows["looper"]["points"] == "4" and "ignored the interrupt" in rows["looper"]["reason"]
    assert _verdict(graded, "looper", "exmini_head_test") == ("not graded: the graded run of `head_dim` stopped (a "
                                                             "cell ran past the time limit of 8 s and ignored the "
                                                             "interrupt)")
    assert rows["hog"]["points"] == "4" and "out of memory (limit 512 MiB for the whole submission)" \
        in rows["hog"]["reason"]
    assert _verdict(graded, "hog", "exmini_head_test").startswith("`head_dim` raised MemoryError")
    # a crash or a flood in a cell no exercise needs stops the notebook's own run (reported), not the graded runs
    assert rows["crasher"]["points"] == "5" and "kernel died" in rows["crasher"]["reason"]
    assert rows["flooder"]["points"] == "5" and "the notebook printed more than 8192 KiB" in rows["flooder"]["reason"]
    assert "output cut: the notebook printed more than 1024 KiB" in rows["flooder"]["reason"]


@needs_bwrap
@pytest.mark.parametrize("student, wrong", [
    ("aliases", "exmini_patches_test"), ("hooks", "exmini_count_test"), ("transformer", "exmini_head_test"),
    ("subclass", "exmini_patches_test"), ("modules", "exmini_count_test"),
])
def test_attacks_on_the_students_own_process_cannot_make_a_wrong_answer_score(graded, student, wrong):
    row = graded["rows"][student]
    assert f"{wrong}=0/" in row["exercises"]
    verdict = _verdict(graded, student, wrong)
    assert not verdict.startswith("correct")


@needs_bwrap
@pytest.mark.parametrize("door", list(DOORS))
def test_a_ruled_out_route_fails_by_every_door_while_the_rest_scores(graded, door):
    row = graded["rows"][f"door_{door}"]
    verdict = _verdict(graded, f"door_{door}", "exmini_patches_test")
    assert "exmini_patches_test=0/2" in row["exercises"] and not verdict.startswith("correct"), verdict  # it failed
    if row["reason"].startswith("flagged by the static scan"):  # the scan flags the door too: no credit at all
        assert row["points"] == "0"
    else:
        assert row["exercises"] == "exmini_count_test=2/2 exmini_head_test=1/1 exmini_patches_test=0/2", row
    if door not in ("thread", "script", "code", "reload"):  # the error the route raised reaches the grader
        assert re.match(r"`patchify` calls `(torch\.nn\.functional\.unfold|aten::im2col|vitsteps\.patches\."
                        r"image_to_patches)` on case 1 of 3", verdict), verdict
    assert graded["rows"]["alice"]["points"] == "5", "the control in the same run scores"


@needs_bwrap
def test_a_function_that_changes_its_input_scores_nothing_for_that_exercise(graded):
    row = graded["rows"]["mutator"]
    assert row["exercises"] == "exmini_count_test=2/2 exmini_head_test=1/1 exmini_patches_test=0/2", row
    assert _verdict(graded, "mutator", "exmini_patches_test").startswith(
        "`patchify` changed its input `image` in place on case 1 of 3")


@needs_bwrap
def test_the_package_reference_and_forbidden_calls_are_caught_at_run_time(graded):
    rows = graded["rows"]
    assert "exmini_patches_test=0/2" in rows["reference"]["exercises"]
    assert "calls the package's own `vitsteps.patches.image_to_patches`" in rows["reference"]["reason"]
    assert "exmini_patches_test=0/2" in rows["forbidden"]["exercises"]
    assert "calls `torch.nn.functional.unfold`, which this exercise forbids" in rows["forbidden"]["reason"]
    assert "calls `torch.nn.Unfold`, which this exercise forbids" in rows["module"]["reason"]
    assert rows["reference"]["points"] == rows["forbidden"]["points"] == rows["module"]["points"] == "3"
    assert _verdict(graded, "forbidden", "exmini_patches_test").startswith(
        "`patchify` calls `torch.nn.functional.unfold` on case 1 of 3")
    # switching a tracer off changes nothing: there is none; the scan flags the attempt
    assert rows["untracer"]["points"] == "0" and "uses `.setprofile`" in rows["untracer"]["reason"]


@needs_bwrap
def test_nothing_secret_reaches_the_graded_notebooks_or_the_feedback(graded):
    course = graded["course"]
    pages = {path: path.read_text(encoding="utf-8") for path in (course / "feedback").rglob("*.html")}
    notebooks = {path: path.read_text(encoding="utf-8") for path in (course / "autograded").rglob("*.ipynb")}
    assert len(pages) == len(notebooks) == 20 + len(DOORS) + 2 * REAL.exists()
    for path, text in {**pages, **notebooks}.items():
        assert SECRET not in text and SECRET_ENV not in text, path
        assert "224, 16" not in text and "HIDDEN TESTS" not in text, path  # hidden tests never ran, never shown
    snoop = _read(course / "autograded" / "snoop" / "grading_mini" / "grading_mini.ipynb")
    printed = "".join(o.get("text", "") for c in snoop.cells for o in c.get("outputs", []))
    # every output is kept, and the grader's inputs never reached that process: the function saw only the visible
    # test's own image
    assert "CALLED-WITH [0.0, 1.0, 2.0]" in printed and "STASHED ['[0.0, 1.0, 2.0]']\n" in printed
    assert "pid1 PermissionError" in printed and "source FileNotFoundError" in printed
    assert "course FileNotFoundError" in printed and "proc ['1', '2']" in printed
    # the answer key is neither importable nor readable in the sandbox; what runs there is
    assert "key ModuleNotFoundError" in printed and "keyfile FileNotFoundError" in printed, printed
    assert "inside imported" in printed
    assert graded["rows"]["snoop"]["points"] == "5"
    for page in pages.values():
        assert "assert count_patches" not in page and "assert patchify" not in page  # no test cell code


@needs_bwrap
def test_nothing_outside_the_sandbox_changes_and_nothing_is_left_behind(graded):
    course = graded["course"]
    vandal = _read(course / "autograded" / "vandal" / "grading_mini" / "grading_mini.ipynb")
    printed = next(o["text"] for c in vandal.cells if "results = {}" in c.source for o in c.outputs)
    assert "'done'" not in printed and graded["outside"].read_text() == "untouched"
    after = _digest(course)
    assert {key: value for key, value in after.items() if key in graded["before"] and key != "gradebook.db"} == \
        {key: value for key, value in graded["before"].items() if key != "gradebook.db"}
    assert _digest(course / "submitted") == graded["submitted"]
    assert all(re.match(r"(autograded|feedback)/|(nbgrader_)?grades\.csv$", path)
               for path in set(after) - set(graded["before"]))
    assert not any(name.startswith("vitcourse") for name in set(os.listdir(tempfile.gettempdir())) -
                   graded["temporary"])


def _nbgrader(course: Path, command: str, *arguments: str) -> None:
    """`nbgrader <command> <arguments>` run in the course folder: nbgrader's own application for the command, in
    this process (the command line dispatches to the same class; this saves starting nbgrader anew)."""
    from nbgrader.apps import ExportApp, ReleaseFeedbackApp

    application = {"export": ExportApp, "release_feedback": ReleaseFeedbackApp}[command]()
    here = os.getcwd()
    os.chdir(course)
    try:
        application.initialize(list(arguments))
        application.start()
    finally:
        os.chdir(here)


@needs_bwrap
def test_refused_folders_have_rows_and_nbgrader_export_and_feedback_release_work(graded, tmp_path):
    course, rows = graded["course"], graded["rows"]
    assert rows[".hidden"]["reason"] == "refused: the student folder's name starts with a dot"
    assert rows["linked"]["reason"] == "refused: the student folder is a symbolic link"
    _nbgrader(course, "export")
    with (course / "nbgrader_grades.csv").open(encoding="utf-8") as handle:
        exported = {(row["assignment"], row["student_id"]): row for row in csv.DictReader(handle)}
    graded_rows = {(row["assignment"], student): row for student, row in rows.items() if row["notebook"]}
    assert set(graded_rows) <= set(exported)  # nbgrader lists every student for every assignment, 0 if missing
    for key, row in graded_rows.items():
        assert float(exported[key]["score"]) == float(row["points"]), key
        assert float(exported[key]["max_score"]) == float(row["max_points"]) > 0
    assert exported[("grading_mini", "alice")]["timestamp"].startswith("2025-01-15 10:00:00")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    _nbgrader(course, "release_feedback", "grading_mini", "--student", "alice", f"--Exchange.root={exchange}")
    released = list((exchange / "vitsteps" / "feedback").glob("*.html"))
    page = course / "feedback" / "alice" / "grading_mini" / "grading_mini.html"
    assert len(released) == 1 and released[0].read_bytes() == page.read_bytes()


@needs_bwrap
def test_a_manual_score_survives_grading_again(graded):
    from nbgrader.api import Gradebook

    course = graded["course"]
    with Gradebook(gradebook.db_url(course), gradebook.course_id(course)) as book:
        book.find_grade("exmini_head_test", "grading_mini", "grading_mini", "bob").manual_score = 0.5
        book.db.commit()
    gradebook.record(course, graded["grades"])
    with Gradebook(gradebook.db_url(course), gradebook.course_id(course)) as book:
        cell = book.find_grade("exmini_head_test", "grading_mini", "grading_mini", "bob")
        assert (cell.manual_score, cell.auto_score, cell.score, cell.needs_manual_grade) == (0.5, 0.0, 0.5, True)


@needs_bwrap
@pytest.mark.skipif(not REAL.exists(), reason="notebooks/01_patches_unfold.ipynb is not written yet")
def test_autograde_on_a_real_notebook(graded):
    course, rows = graded["course"], graded["rows"]
    tests = [c for c in _read(REAL).cells if is_test(c)]
    assert float(rows["alice01"]["points"]) == sum(cell_points(c) for c in tests) == 3
    assert rows["alice01"]["reason"] == ""
    assert rows["trudy01"]["points"] == "0" and "vitsteps.teach.checks.check" in rows["trudy01"]["reason"]
    assert _verdict(graded, "trudy01", "ex01_image_to_patches_test") == "correct, but flagged: the static scan flags " \
        "the notebook (see the reason)"
    assert not _verdict(graded, "trudy01", "ex01_image2emb_test").startswith("correct")
    page = (course / "feedback" / "alice01" / REAL.stem / f"{REAL.stem}.html").read_text(encoding="utf-8")
    assert "check(&quot;image_to_patches&quot;" not in page and "BEGIN HIDDEN" not in page
    assert "<img" in page, "the figures drawn before the first graded test are on the page"

