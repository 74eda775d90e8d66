"""A class of cheap submissions for the cluster tests and benchmark: the grading tests' mini notebook (or a series
notebook) handed in by many students, right, partly wrong, unfinished, hanging, and a few refused folders."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import nbformat
from vitcourse.course.release import release, student_version
from vitcourse.judge.cells import is_solution

FIXTURES = Path(__file__).parent / "fixtures"
MINI = FIXTURES / "grading_mini.ipynb"
TABLE = str(FIXTURES / "exercises.py")
WRONG = {  # one wrong answer per exercise of the mini notebook
    "exmini_count": "def count_patches(image_size, patch_size):\n    return 0",
    "exmini_head": "def head_dim(embed_dim, num_heads):\n    return num_heads",
    "exmini_patches": "def patchify(image, patch_size):\n"
                      "    B, C, H, W = image.shape\n"
                      "    N = (H // patch_size) * (W // patch_size)\n"
                      "    return torch.zeros(B, N, C * patch_size ** 2)",
}
HANG = "def head_dim(embed_dim, num_heads):\n    while True:\n        pass"


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solved(source: nbformat.NotebookNode, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The student version with every solution written: the source's, or the one `answers` gives."""
    answers = answers or {}
    notebook = student_version(source)
    solutions = {_grade_id(cell): "\n".join(line for line in cell.source.splitlines() if "SOLUTION" not in line)
                 for cell in source.cells if is_solution(cell)}
    for cell in notebook.cells:
        if _grade_id(cell) in solutions:
            cell.source = answers.get(_grade_id(cell), solutions[_grade_id(cell)])
    return notebook


def make_class(course: Path, students: int, notebook: Path = MINI, hang: int = 0, refused: bool = True) -> Path:
    """A released course with `students` submissions of `notebook`: a cycle of right, one-wrong, two-wrong and
    unfinished work (the mini notebook's answers), `hang` of them hanging in an endless loop, and (with
    `refused`) a hidden folder, a linked folder and a stray file under `submitted/`."""
    release(course, [notebook], TABLE)
    source = nbformat.read(notebook, as_version=4)
    wrong = WRONG if notebook == MINI else {}
    kinds = [{}, *({key: answer} for key, answer in wrong.items()), dict(list(wrong.items())[:2]), None]
    for number in range(students):
        kind = kinds[number % len(kinds)]
        if number < hang:
            handed_in = solved(source, {"exmini_head": HANG})
        else:
            handed_in = student_version(source) if kind is None else solved(source, kind)
        folder = course / "submitted" / f"s{number:04d}" / notebook.stem
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(copy.deepcopy(handed_in), folder / notebook.name)
    if refused:
        (course / "submitted" / ".hidden" / notebook.stem).mkdir(parents=True)
        (course / "submitted" / "linked").symlink_to(course / "submitted" / "s0000")
        (course / "submitted" / "stray.txt").write_text("not a folder")
    return course


def rows(course: Path) -> list[dict[str, str]]:
    """grades.csv's rows, in its order."""
    with (course / "grades.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
