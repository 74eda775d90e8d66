"""The notebook executor stores outputs that do not change from one run to the next."""
import json
import uuid

import nbformat
from vitcourse.execute import renumber_widget_ids


def _notebook_with_widgets(slider_id: str, layout_id: str, style_id: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": slider_id, "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "IntSlider(value=3)"}
    cell = nbformat.v4.new_code_cell("IntSlider(3)", outputs=[nbformat.v4.new_output("display_data", data=view)])
    cell.id = "widget-cell"
    notebook.cells = [cell]
    state = {
        style_id: {"model_name": "SliderStyleModel", "state": {"description_width": ""}},
        layout_id: {"model_name": "LayoutModel", "state": {"width": None}},
        slider_id: {"model_name": "IntSliderModel",
                    "state": {"layout": f"IPY_MODEL_{layout_id}", "style": f"IPY_MODEL_{style_id}", "value": 3}},
    }
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    return notebook


def test_random_widget_ids_give_the_same_text():
    first = renumber_widget_ids(_notebook_with_widgets(*(uuid.uuid4().hex for _ in range(3))), "nb")
    second = renumber_widget_ids(_notebook_with_widgets(*(uuid.uuid4().hex for _ in range(3))), "nb")
    assert first == second


def test_renumbered_ids_still_link_views_to_their_models():
    text = renumber_widget_ids(_notebook_with_widgets(*(uuid.uuid4().hex for _ in range(3))), "nb")
    notebook = json.loads(text)
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    view_id = notebook["cells"][0]["outputs"][0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    slider = state[view_id]["state"]
    assert state[slider["layout"].removeprefix("IPY_MODEL_")]["model_name"] == "LayoutModel"
    assert state[slider["style"].removeprefix("IPY_MODEL_")]["model_name"] == "SliderStyleModel"


def test_ids_depend_on_the_notebook_name():
    ids = [uuid.uuid4().hex for _ in range(3)]
    assert renumber_widget_ids(_notebook_with_widgets(*ids), "a") != renumber_widget_ids(
        _notebook_with_widgets(*ids), "b")
