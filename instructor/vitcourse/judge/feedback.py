"""The feedback page: the score table, the grader's notes, the student's cells, the verdicts in place of tests."""
from __future__ import annotations

import copy
import html
import re
import threading

import nbformat

from .cells import cell_grade_id, is_solution, is_test, shown_number
from .grade import STUDENT_MARK, Grade

_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
_EXPORTERS = threading.local()
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
STUDENT_LABEL = "student output: "
MAX_STUDENT_TEXT = 300  # characters of the student's text in a reason or a row
MAX_STUDENT_CELL = 20_000  # characters of one student markdown cell on the feedback page


def student_text(text: object, limit: int = MAX_STUDENT_TEXT) -> str:
    """Text that came from the student's process or files, as a reason may quote it: on one line (newlines and
    control characters written as escapes), cut to `limit` characters, and labelled "student output: ".
    Escaping for HTML, CSV and markdown happens where the text is written (the feedback page, grades.csv)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 8:
        raise ValueError(f"limit must be a whole number of characters, at least 8, got {limit!r}; e.g. 300.")
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub(lambda match: repr(match.group(0))[1:-1], text)
    if len(text) > limit:
        text = text[:limit - 1] + "\u2026"
    return STUDENT_LABEL + text


def feedback_html(graded: nbformat.NotebookNode, grade: Grade) -> str:
    """The feedback page: the score table, the grader's notes, the student's notebook as it ran, and in place of
    each test cell the grader's verdict. Test cells' code and hidden tests are never on it; every output is, since
    the notebook's own run never held the grader's inputs."""
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
        if cell.cell_type == "markdown" and (cell.metadata.get(STUDENT_MARK) or is_solution(cell)):
            # the student's markdown (an added cell or a written answer) is shown as text, never rendered
            text = cell.source if len(cell.source) <= MAX_STUDENT_CELL else \
                cell.source[:MAX_STUDENT_CELL] + f"\n[... cut at {MAX_STUDENT_CELL:,} characters]"
            cell.source = "*The student's text, as written:*\n\n" + _as_plain_text(text)
        elif cell.cell_type == "raw":
            cell.cell_type, cell.source = "markdown", _as_plain_text(cell.source[:MAX_STUDENT_CELL])
        cell.metadata = {}
        if cell.cell_type == "code":
            kept = []
            for output in cell.get("outputs", []):
                if output.get("output_type") in ("execute_result", "display_data"):
                    output["data"] = {mime: value for mime, value in output.get("data", {}).items()
                                      if mime in _SAFE_MIME and isinstance(value, str)
                                      and (mime == "text/plain" or _BASE64.fullmatch(value))}
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

