"""vitsteps.teach.explorers.widgets: the explorers, headless, driven by setting slider values, and bad input named.

Each test redraws only what it needs: a redraw (compute, draw, PNG) is the slow part here.
"""
from __future__ import annotations

import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps import PRESETS
from vitsteps.teach.explorers import attention_explorer, compute, model_calculator, patch_explorer, token_explorer
from vitsteps.teach.explorers import widgets as W

L = compute.attention_base_config().seq_len  # tokens of the mnist model the attention explorer shows (CLS + patches)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FACTORIES = [patch_explorer, token_explorer, attention_explorer, model_calculator]


@pytest.fixture(autouse=True)
def no_new_figures():
    """Every figure an explorer makes is closed in pyplot: none pile up (nbval fails on 'More than 20')."""
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


def _row(explorer: W.Explorer, step: str) -> str:
    """The text of the table row whose data-step is `step`."""
    table = explorer.table.value
    start = table.index(f"data-step='{step}'")
    return table[start:table.index("</tr>", start)]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda factory: factory.__name__)
def test_each_explorer_is_one_call_that_returns_a_drawn_widget_with_throttled_sliders(factory):
    explorer = factory()
    assert isinstance(explorer, ipywidgets.Widget)
    assert explorer.redraws == 1
    assert bytes(explorer.figure.value).startswith(PNG_MAGIC)
    assert explorer.error is None
    assert "<table" in explorer.table.value
    sliders = [control for control in explorer.controls.values()
               if isinstance(control, (ipywidgets.IntSlider, ipywidgets.FloatSlider, ipywidgets.SelectionSlider))]
    assert sliders and all(slider.continuous_update is False for slider in sliders)


def test_patch_explorer_shows_the_article_shapes_then_follows_the_patch_size():
    explorer = patch_explorer()
    assert "[1, 48, 4]" in _row(explorer, "unfold")
    assert "[1, 4, 8]" in _row(explorer, "matmul")
    assert "[8, 3, 4, 4]" in _row(explorer, "kernel")
    assert "equals conv: True" in explorer.message.value
    first_picture = bytes(explorer.figure.value)
    explorer.controls["patch_size"].value = 2
    assert explorer.redraws == 2
    assert bytes(explorer.figure.value) != first_picture
    assert "[1, 12, 16]" in _row(explorer, "unfold")
    assert "[1, 16, 8]" in _row(explorer, "transpose to tokens")
    assert "[1, 8, 4, 4]" in _row(explorer, "conv")


def test_set_changes_several_controls_with_one_redraw():
    explorer = patch_explorer()
    explorer.set(image_size=16, in_chans=1, model_dim=32)
    assert explorer.redraws == 2
    assert "[1, 1, 16, 16]" in _row(explorer, "image")
    assert "[1, 16, 32]" in _row(explorer, "matmul")


def test_patch_explorer_explains_a_patch_size_that_does_not_divide_and_keeps_the_last_picture():
    explorer = patch_explorer()
    picture = bytes(explorer.figure.value)
    explorer.controls["patch_size"].value = 3
    assert "patch_size=3 does not divide the image height 8" in explorer.error
    assert "does not divide" in explorer.message.value and "still shows the last choice" in explorer.message.value
    assert "Traceback" not in explorer.message.value
    assert explorer.table.value == ""
    assert explorer.redraws == 1 and bytes(explorer.figure.value) == picture
    explorer.controls["patch_size"].value = 8
    assert explorer.error is None
    assert "[1, 1, 8]" in _row(explorer, "matmul")


def test_an_impossible_starting_choice_shows_its_message_and_no_picture():
    explorer = patch_explorer(patch_size=3)
    assert explorer.redraws == 0
    assert "patch_size=3 does not divide" in explorer.message.value
    assert "still shows" not in explorer.message.value


def test_token_explorer_shows_the_packages_error_when_the_sequence_outgrows_the_table():
    explorer = token_explorer()
    assert "[1, 5, 8]" in _row(explorer, "cat")
    picture = bytes(explorer.figure.value)
    explorer.set(batch_size=4, num_patches=20)
    assert "position_table has only 16 rows" in explorer.error
    assert "max_num_token=16" in explorer.message.value
    assert "[4, 1, 8]" in _row(explorer, "expand")
    assert "only 16 of the 21 rows needed" in _row(explorer, "slice")
    assert "ValueError" in _row(explorer, "add")
    assert explorer.redraws == 2 and bytes(explorer.figure.value) != picture  # the picture shows the missing rows
    explorer.controls["max_num_token"].value = 21
    assert explorer.error is None
    assert "[4, 21, 8]" in _row(explorer, "add")


def test_attention_explorer_keeps_layer_and_head_inside_the_model_and_redraws_for_a_query():
    explorer = attention_explorer(num_heads=4, depth=4, layer=3, head=3)
    explorer.controls["depth"].value = 2
    assert explorer.controls["layer"].max == 1 and explorer.controls["layer"].value == 1
    explorer.controls["num_heads"].value = 2
    assert explorer.controls["head"].max == 1 and explorer.controls["head"].value == 1
    assert explorer.error is None
    assert f"2 x <b>[1, 2, {L}, {L}]</b>" in explorer.table.value
    picture = bytes(explorer.figure.value)
    explorer.controls["query"].value = L - 1
    assert bytes(explorer.figure.value) != picture
    width = compute.attention_base_config().embed_dim
    assert all(width % heads == 0 for heads in explorer.controls["num_heads"].options)


def test_attention_explorer_starts_from_the_shipped_model_or_the_preset():
    trained = compute.trained_attention_model()
    config = trained.config if trained is not None else PRESETS["mnist"]
    explorer = attention_explorer()
    assert (explorer.controls["num_heads"].value, explorer.controls["depth"].value) == (config.num_heads,
                                                                                         config.depth)
    assert explorer.trained == (trained is not None)
    assert ("the trained mnist model shipped with vitsteps" in explorer.model_note.value) == (trained is not None)
    assert ("UNTRAINED" in explorer.message.value) == (trained is None)


def test_attention_explorer_says_in_red_whenever_heads_or_depth_make_an_untrained_model(shipped_model,
                                                                                      seeded_model):
    shipped_model(seeded_model(7, num_heads=2, depth=2))
    explorer = attention_explorer()
    assert explorer.trained and explorer.message.value == ""
    assert "the trained mnist model shipped with vitsteps" in explorer.model_note.value
    trained_picture = bytes(explorer.figure.value)
    explorer.controls["depth"].value = 3
    assert not explorer.trained and explorer.error is None  # a working model, but not the trained one
    assert "vitsteps-untrained" in explorer.message.value and "#b3261e" in explorer.message.value
    assert ("UNTRAINED: the trained mnist model has 2 heads and 2 blocks; 2 heads and 3 blocks make a new model "
            "with random weights") in explorer.message.value
    assert "untrained model" in explorer.model_note.value
    assert explorer._fig.get_suptitle() == "layer 0, head 0 of 2: UNTRAINED model (random weights)"
    explorer.set(depth=2, num_heads=4)
    assert not explorer.trained and "4 heads and 2 blocks" in explorer.message.value
    explorer.set(num_heads=2)
    assert explorer.trained and explorer.message.value == ""
    assert explorer._fig.get_suptitle() == "layer 0, head 0 of 2: trained model"
    assert bytes(explorer.figure.value) == trained_picture


def test_model_calculator_buttons_set_the_presets_with_one_redraw_each():
    calculator = model_calculator()
    for button in calculator.buttons:
        redraws = calculator.redraws
        button.click()
        config = PRESETS[W.CALCULATOR_PRESETS[button.description]]
        assert calculator.redraws == redraws + 1
        assert calculator.values() == {field: getattr(config, field) for field in calculator.controls}
        stats = compute.model_stats(config.depth, config.embed_dim, config.num_heads, config.mlp_ratio,
                                    config.patch_size, config.img_size)
        assert calculator.table.value.count(f"{stats.params_formula:,}") >= 2  # by the formula and counted
        assert "(same)" in calculator.table.value


@pytest.mark.parametrize("name", ["toy", "digits"])
def test_model_calculator_sliders_hold_the_small_presets(name):
    calculator = model_calculator(name)
    assert calculator.values() == {field: getattr(PRESETS[name], field) for field in calculator.controls}
    assert calculator.error is None


def test_model_calculator_explains_impossible_combinations():
    calculator = model_calculator()
    calculator.controls["num_heads"].value = 5
    assert "embed_dim=768 is not divisible by num_heads=5" in calculator.message.value
    calculator.set(num_heads=12, patch_size=15)
    assert "patch_size=15 does not divide" in calculator.message.value
    assert "Traceback" not in calculator.message.value


def test_explorers_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    patch_explorer().controls["patch_size"].value = 2
    token_explorer(batch_size=3)
    assert torch.equal(state, torch.random.get_rng_state())


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "patch_explorer: an image size between slider steps":
        (lambda: patch_explorer(image_size=10), ValueError,
         r"image_size must be from 4 to 32 in steps of 4 \(the slider's range\), got 10"),
    "patch_explorer: a fractional patch size":
        (lambda: patch_explorer(patch_size=2.0), TypeError, r"patch_size must be an int from 1 to 16, got 2\.0"),
    "patch_explorer: a model width past the slider":
        (lambda: patch_explorer(model_dim=65), ValueError, r"model_dim must be an int from 1 to 64, got 65"),
    "patch_explorer: two channels":
        (lambda: patch_explorer(in_chans=2), ValueError, r"in_chans must be one of 1, 3, got 2; pass 1 \(the digit\)"),
    "patch_explorer: a digit of 11":
        (lambda: patch_explorer(digit=11), ValueError, r"digit must be an int from 0 to 9, got 11"),
    "token_explorer: a table of no rows":
        (lambda: token_explorer(max_num_token=0), ValueError, r"max_num_token must be an int from 1 to 80, got 0"),
    "token_explorer: a batch size that is text":
        (lambda: token_explorer(batch_size="2"), TypeError, r"batch_size must be an int from 1 to 8, got '2'"),
    "attention_explorer: heads that do not divide the width":
        (lambda: attention_explorer(num_heads=3), ValueError, r"num_heads must be one of 1, 2, 4, .*got 3; these "
                                                              r"divide embed_dim=64"),
    "attention_explorer: a layer past the model":
        (lambda: attention_explorer(num_heads=4, depth=4, layer=4), ValueError, r"layer must be an int from 0 to 3"),
    "attention_explorer: a head past the model":
        (lambda: attention_explorer(num_heads=4, depth=2, head=4), ValueError, r"head must be an int from 0 to 3"),
    "attention_explorer: a query past the tokens":
        (lambda: attention_explorer(query=L), ValueError, rf"query must be an int from 0 to {L - 1}"),
    "model_calculator: an unknown preset":
        (lambda: model_calculator("vit_gigantic"), ValueError, r"preset must be one of .*got 'vit_gigantic'"),
    "ModelCalculator.apply_preset: an unknown preset":
        (lambda: model_calculator("toy").apply_preset("vit_xl"), ValueError, r"name must be one of .*got 'vit_xl'"),
    "Explorer.set: a control the explorer does not have":
        (lambda: token_explorer().set(patch_size=2), ValueError,
         r"values must name controls of this explorer, got \['patch_size'\]; the controls are"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


def test_attention_explorer_answers_an_impossible_combination_with_a_message_not_a_traceback():
    explorer = attention_explorer(num_heads=4, depth=6, head=3)
    explorer.set(num_heads=2)  # set() moves the heads alone: head 3 of 2 cannot be shown
    assert "head must be an int from 0 to 1, got 3" in explorer.error
    assert "vitsteps-problem" in explorer.message.value and "last choice that worked" in explorer.message.value
    explorer.set(head=1)
    assert explorer.error is None
