"""The notebooks as documents: what they store, what their exercises ask, and the numbers their text states.

nbval (in `make test`) re-runs every cell and compares the outputs; these tests read the stored notebooks:
no machine path in an output (so `make notebooks` in a clone anywhere leaves `git diff` empty), no graded
solution that earlier cells already spell out, every exercise described with its call and an example, and
every figure of the text backed by what the notebook computes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from vitcourse.judge.exercises import EXERCISES

import vitsteps

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the notebooks whose text this series' exercises and figures belong to (07 and 08 train and read a model)
STAGE_NOTEBOOKS = [path for path in NOTEBOOKS if path.name[:2] in {"00", "01", "02", "03", "04", "05", "06", "09"}]
MACHINE_PATH = re.compile(r"/work/|/tmp/|/root/|/home/|site-packages|\.venv")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _outputs_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
        parts += [output.get("evalue", ""), "\n".join(output.get("traceback", []))]
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_stored_output_holds_a_machine_path(path):
    found = [(index, MACHINE_PATH.search(_outputs_text(cell)).group(0)) for index, cell in enumerate(_cells(path))
             if MACHINE_PATH.search(_outputs_text(cell))]
    assert not found, f"cells {found} store a path of the machine that ran them"


def _normalised(source: str) -> list[str]:
    """The lines of `source` stripped, comments and blank lines dropped (a shape comment changes nothing)."""
    lines = []
    for line in source.splitlines():
        code = re.sub(r"\s+#.*$", "", line).strip()
        if code and not code.startswith("#"):
            lines.append(code)
    return lines


def _solution_body(source: str) -> str:
    return source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]


SOLUTIONS = [(path, index) for path in NOTEBOOKS for index, cell in enumerate(_cells(path))
             if cell.get("metadata", {}).get("nbgrader", {}).get("solution")]


@pytest.mark.parametrize(("path", "index"), SOLUTIONS,
                         ids=[_cells(path)[index]["metadata"]["nbgrader"]["grade_id"] for path, index in SOLUTIONS])
def test_no_graded_solution_can_be_assembled_from_the_cells_above_it(path, index):
    cells = _cells(path)
    earlier = {line for cell in cells[:index] for line in _normalised("".join(cell["source"]))}
    solution = _normalised(_solution_body("".join(cells[index]["source"])))
    new = [line for line in solution if line not in earlier]
    assert solution and new, "every line of this solution already appears in the notebook above it"


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_exercise_says_what_to_write_with_its_call_and_an_example(name):
    exercise = EXERCISES[name]
    path = ROOT / "notebooks" / f"{exercise.notebook}.ipynb"
    texts = {cell["metadata"].get("nbgrader", {}).get("grade_id"): "".join(cell["source"]) for cell in _cells(path)}
    instructions = texts[f"{exercise.grade_id}_md"]
    assert f"`{name}(" in instructions, "the instructions name the call to write"
    assert "Example" in instructions or "example" in instructions.lower(), "the instructions give an example"
    assert "marked lines" not in instructions


def test_the_student_instructions_name_the_stub_students_see():
    stub_words = "`# YOUR CODE HERE` followed by `raise NotImplementedError()`"
    for path in STAGE_NOTEBOOKS:
        text = "\n".join("".join(cell["source"]) for cell in _cells(path) if cell["cell_type"] == "markdown")
        assert "marked lines" not in text, path.name
        graded = any(cell.get("metadata", {}).get("nbgrader", {}).get("solution") for cell in _cells(path))
        if graded and path.name[:2] != "09":
            assert stub_words in text or "`# YOUR CODE HERE` and `raise NotImplementedError()`" in text, path.name


THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d])")


@pytest.mark.parametrize("path", STAGE_NOTEBOOKS, ids=lambda path: path.stem)
def test_every_count_the_text_states_is_one_the_notebook_computes(path):
    """A number such as 211,474 in a markdown cell appears in a stored output, or in an assert of a code cell."""
    cells = _cells(path)
    outputs = "\n".join(_outputs_text(cell) for cell in cells)
    code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for number in THOUSANDS.findall("".join(cell["source"])):
            asserted = number.replace(",", "_") in code
            assert number in outputs or asserted, f"{number} in the text of {path.name} is computed nowhere"


def test_the_digits_preset_has_the_patch_size_the_text_says():
    patch_size = vitsteps.get_config("digits").patch_size
    sentences = re.compile(r"`digits` (?:preset|ViT)[^.]*?(\d+)x\1 patches")
    texts = [(path.name, "".join(cell["source"])) for path in NOTEBOOKS for cell in _cells(path)]
    texts.append(("README.md", (ROOT / "README.md").read_text(encoding="utf-8")))
    said = [(name, int(match)) for name, text in texts for match in sentences.findall(text)]
    assert said, "the text names the digits preset's patches somewhere"
    assert all(size == patch_size for _, size in said), said


def test_no_self_check_case_calls_a_configuration_digits_unless_it_is_the_preset():
    preset = vitsteps.get_config("digits")
    for name, exercise in EXERCISES.items():
        for case in exercise.make_cases(torch.Generator().manual_seed(0)):
            if "digits" in case.label:
                config = case.args[0]
                assert (config.img_size, config.patch_size, config.in_chans) == (
                    preset.img_size, preset.patch_size, preset.in_chans), (name, case.label)


def _stored_images(path: Path) -> list[tuple[int, bytes, dict]]:
    import base64

    found = []
    for index, cell in enumerate(_cells(path)):
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                found.append((index, base64.b64decode(output["data"]["image/png"]),
                              output.get("metadata", {}).get("image/png", {})))
    return found


@pytest.mark.parametrize("path", [path for path in NOTEBOOKS if _stored_images(path)], ids=lambda path: path.stem)
def test_every_stored_figure_has_150_pixels_per_inch_of_the_size_it_is_shown_at(path):
    from vitsteps.teach.figures._draw import png_size

    soft = []
    for index, png, shown in _stored_images(path):
        width, height = png_size(png)
        if not shown.get("width") or width / shown["width"] < 1.5 or height / shown["height"] < 1.5:
            soft.append((index, (width, height), shown))  # shown at 100 screen pixels per inch: 1.5 stored per pixel
    assert not soft, f"cells {soft} store a figure under 150 pixels per inch: re-execute the notebook"


@pytest.mark.parametrize("name", [name for name, exercise in EXERCISES.items()
                                  if exercise.forbidden or exercise.package_reference])
def test_each_exercise_says_which_routes_are_closed_when_it_is_graded(name):
    exercise = EXERCISES[name]
    notebook = json.loads((ROOT / "notebooks" / f"{exercise.notebook}.ipynb").read_text(encoding="utf-8"))
    cell = next(c for c in notebook["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == f"{exercise.grade_id}_md")
    text = " ".join("".join(cell["source"]).split())
    sentence = text[text.index("When graded, your function runs where"):]
    for route in exercise.forbidden + exercise.package_reference:
        if not route.startswith("aten::"):
            assert f"`{route}`" in sentence, (name, route)
    assert ("operators behind them" in sentence) == any(r.startswith("aten::") for r in exercise.forbidden)
