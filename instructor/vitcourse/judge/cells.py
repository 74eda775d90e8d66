"""nbgrader's cell metadata, read the same way everywhere: grade ids, test and solution cells, points."""
from __future__ import annotations

from typing import Any

import nbformat


def cell_meta(cell: nbformat.NotebookNode) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def cell_grade_id(cell: nbformat.NotebookNode) -> str | None:
    grade_id = cell_meta(cell).get("grade_id")
    return grade_id if isinstance(grade_id, str) and grade_id else None


def is_test(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(cell_meta(cell).get("grade")) and cell_grade_id(cell) is not None


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return bool(cell_meta(cell).get("solution")) and cell_grade_id(cell) is not None


def cell_points(cell: nbformat.NotebookNode) -> float:
    points = cell_meta(cell).get("points", 0)
    return float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) else 0.0


def shown_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

