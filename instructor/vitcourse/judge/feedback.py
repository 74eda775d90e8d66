"""The feedback page: the score table, the grader's notes, the student's cells, the verdicts in place of tests."""
from __future__ import annotations

import copy
import html
import re
import threading

import nbformat

from .cells import cell_grade_id, is_test, shown_number
from .grade import STUDENT_MARK, Grade

_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
_EXPORTERS = threading.local()


def feedback_html(graded: nbformat.NotebookNode, grade: Grade) -> str:
    """The feedback page: the score table, the grader's notes, the student's notebook as it ran, and in place of
    each test cell the grader's verdict. Test cells' code and hidden tests are never on it, nor outputs produced
    after the first graded test."""
    from nbconvert import HTMLExporter

    notebook = copy.deepcopy(graded)
    lines = [f"# Feedback: {html.escape(grade.assignment)}",
             f"**{html.escape(grade.student)}**, `{html.escape(grade.notebook)}`: "
             f"**{shown_number(grade.points)} / {shown_number(grade.max_points)} points**", "",
             "| exercise | points |", "|---|---|"]
    lines += [f"| {html.escape(grade_id)} | {shown_number(got)} / {shown_number(out_of)} |"
              for grade_id, (got, out_of) in grade.exercises.items()]
    if grade.reasons:
        lines += ["", "**Notes from the grader:**", "", _as_plain_text("\n".join(grade.reasons))]
    cells = [nbformat.v4.new_markdown_cell("\n".join(lines))]
    for cell in notebook.cells:
        if is_test(cell):
            grade_id = cell_grade_id(cell)
            got, out_of = grade.exercises.get(grade_id, (0.0, 0.0))
            text = f"**{html.escape(grade_id)}: {shown_number(got)} / {shown_number(out_of)} points**"
            verdict = grade.verdicts.get(grade_id)
            if verdict:
                text += "\n\n" + _as_plain_text(verdict)
            cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        if cell.cell_type == "markdown" and cell.metadata.get(STUDENT_MARK):
            cell.source = _as_plain_text(cell.source)  # the student's markdown is shown, never rendered as HTML
        cell.metadata = {}
        if cell.cell_type == "code":
            kept = []
            for output in cell.get("outputs", []):
                if output.get("output_type") in ("execute_result", "display_data"):
                    output["data"] = {mime: value for mime, value in output.get("data", {}).items()
                                      if mime in _SAFE_MIME}
                    output["metadata"] = {}
                    if not output["data"]:
                        continue
                kept.append(output)
            cell.outputs = kept
        cell.pop("attachments", None)
        cells.append(cell)
    notebook.cells = cells
    notebook.metadata = {"language_info": {"name": "python"}}
    exporter = getattr(_EXPORTERS, "html", None)
    if exporter is None:
        exporter = _EXPORTERS.html = HTMLExporter(template_name="lab")  # one per grading thread: loading is slow
    body, _ = exporter.from_notebook_node(notebook)
    return body


def _as_plain_text(text: str) -> str:
    """Markdown that shows `text` verbatim: a fenced block longer than any run of backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"

