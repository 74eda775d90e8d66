"""The standard-library student versions (`make lab`'s workspace) agree with nbgrader's, and never overwrite work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from vitcourse.student import make_workspace, student_version

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_student_version_matches_nbgrader_cell_for_cell(path):
    nbgrader_version = pytest.importorskip("vitcourse.course.release").student_version
    import nbformat

    ours = student_version(_load(path), path.name)
    theirs = nbgrader_version(nbformat.read(path, as_version=4))
    assert [cell["cell_type"] for cell in ours["cells"]] == [cell.cell_type for cell in theirs.cells]
    for mine, reference in zip(ours["cells"], theirs.cells, strict=True):
        assert mine["source"] == reference.source
        for key in ("editable", "deletable"):
            assert mine["metadata"].get(key) == reference.metadata.get(key)
        if mine["cell_type"] == "code":
            assert mine["outputs"] == [] and mine["execution_count"] is None


def test_student_version_stubs_solutions_and_drops_hidden_tests():
    notebook = {"cells": [
        {"cell_type": "code", "metadata": {"nbgrader": {"solution": True, "grade_id": "ex"}},
         "source": "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n", "outputs": [1],
         "execution_count": 3},
        {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "grade_id": "ex_test", "points": 1}},
         "source": "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS",
         "outputs": [], "execution_count": 4},
    ], "metadata": {"widgets": {"state": {}}}, "nbformat": 4, "nbformat_minor": 5}
    student = student_version(notebook)
    solution, test = student["cells"]
    assert solution["source"] == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert "return x + 1" not in json.dumps(student)
    assert test["source"] == "assert f(1) == 2"
    assert test["metadata"]["editable"] is False and solution["metadata"]["deletable"] is False
    assert "widgets" not in student["metadata"] and solution["outputs"] == []
    assert notebook["cells"][0]["outputs"] == [1], "the solution notebook itself is left alone"


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "has no `END SOLUTION`"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "a second `BEGIN SOLUTION`"),
])
def test_broken_solution_regions_are_named(source, message):
    notebook = {"cells": [{"cell_type": "code", "source": source, "outputs": [], "execution_count": None,
                           "metadata": {"nbgrader": {"solution": True, "grade_id": "ex"}}}]}
    with pytest.raises(ValueError, match=message):
        student_version(notebook, "nb.ipynb")


def test_student_version_refuses_what_is_not_a_notebook():
    with pytest.raises(TypeError, match="notebook must be a parsed .ipynb"):
        student_version(["cells"])


def test_workspace_is_made_once_and_never_overwritten(tmp_path):
    first = make_workspace(NOTEBOOKS[:2], tmp_path / "ws")
    assert [what for _, what in first] == ["added", "added"]
    mine = tmp_path / "ws" / NOTEBOOKS[0].name
    mine.write_text("my work", encoding="utf-8")
    again = make_workspace(NOTEBOOKS[:3], tmp_path / "ws")
    assert [what for _, what in again] == ["kept", "kept", "added"]
    assert mine.read_text(encoding="utf-8") == "my work"
    solution_text = NOTEBOOKS[1].read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" in solution_text
    assert "BEGIN SOLUTION" not in (tmp_path / "ws" / NOTEBOOKS[1].name).read_text(encoding="utf-8")
