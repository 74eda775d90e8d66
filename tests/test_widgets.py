"""The explorers, headless: the pure functions under them, and the widgets driven by setting slider values."""
from __future__ import annotations

import dataclasses
import warnings

import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vitsteps import PRESETS, ViT, get_config, patch_embed_unfold
from vitsteps import widgets as W

L = W._attention_base_config().seq_len  # tokens of the digits model the attention explorer shows (CLS + patches)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ------------------------------------------------------------------------------------- patch pipeline


def test_patch_pipeline_shapes_are_the_original_articles():
    shapes = dict(W.patch_pipeline_shapes(image_size=8, patch_size=4, in_chans=3, model_dim=8))
    assert shapes == {
        "image": (1, 3, 8, 8),
        "unfold": (1, 48, 4),
        "transpose": (1, 4, 48),
        "matmul": (1, 4, 8),
        "kernel": (8, 3, 4, 4),
        "conv": (1, 8, 2, 2),
        "reshape": (1, 8, 4),
        "transpose to tokens": (1, 4, 8),
    }


@pytest.mark.parametrize(("image_size", "patch_size", "in_chans", "model_dim"),
                         [(8, 2, 1, 64), (8, 8, 3, 5), (12, 3, 1, 7), (32, 1, 3, 2), (28, 4, 1, 16)])
def test_patch_pipeline_shapes_follow_the_formulas(image_size, patch_size, in_chans, model_dim):
    shapes = dict(W.patch_pipeline_shapes(image_size, patch_size, in_chans, model_dim))
    grid = image_size // patch_size
    N, depth = grid * grid, in_chans * patch_size ** 2
    assert shapes["unfold"] == (1, depth, N)
    assert shapes["transpose"] == (1, N, depth)
    assert shapes["matmul"] == shapes["transpose to tokens"] == (1, N, model_dim)
    assert shapes["kernel"] == (model_dim, in_chans, patch_size, patch_size)
    assert shapes["conv"] == (1, model_dim, grid, grid)
    assert shapes["reshape"] == (1, model_dim, N)


def test_patch_pipeline_tokens_are_the_packages_and_both_routes_agree():
    pipeline = W.patch_pipeline(image_size=8, patch_size=2, in_chans=3, model_dim=6, seed=5)
    weight = torch.randn(12, 6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pipeline.patch_tokens, patch_embed_unfold(pipeline.image, 2, weight))
    assert pipeline.routes_agree is True


def test_patch_pipeline_rejects_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="patch_size=3 does not divide the image height 8"):
        W.patch_pipeline_shapes(image_size=8, patch_size=3)


def test_patch_pipeline_rejects_a_patch_larger_than_the_image():
    with pytest.raises(ValueError, match="patch_size=16 is larger than the image"):
        W.patch_pipeline_shapes(image_size=8, patch_size=16)


@pytest.mark.parametrize(("arguments", "error", "name"), [
    ({"image_size": 0}, ValueError, "image_size"),
    ({"patch_size": 2.0}, TypeError, "patch_size"),
    ({"in_chans": -1}, ValueError, "in_chans"),
    ({"model_dim": "8"}, TypeError, "model_dim"),
])
def test_patch_pipeline_names_the_bad_argument(arguments, error, name):
    with pytest.raises(error, match=name):
        W.patch_pipeline_shapes(**arguments)


def test_digit_image_is_the_first_sample_of_its_class():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    first_seven = bunch.images[list(bunch.target).index(7)] / 16.0
    image = W.digit_image(7)
    assert image.shape == (1, 1, 8, 8)
    assert torch.allclose(image[0, 0], torch.as_tensor(first_seven, dtype=torch.float32))


@pytest.mark.parametrize("digit", [-1, 10, 3.0, True])
def test_digit_image_rejects_anything_but_0_to_9(digit):
    with pytest.raises(ValueError, match="digit must be an int from 0 to 9"):
        W.digit_image(digit)


def test_explorer_image_keeps_the_digit_and_colours_the_background():
    gray = W.explorer_image(8, 1, digit=3)
    colour = W.explorer_image(8, 3, digit=3)
    assert gray.shape == (1, 1, 8, 8) and colour.shape == (1, 3, 8, 8)
    assert torch.equal(gray, W.digit_image(3))
    assert 0 <= float(colour.min()) and float(colour.max()) <= 1
    strokes = gray[0, 0] == 1
    assert torch.equal(colour[0][:, strokes], torch.ones(3, int(strokes.sum())))  # white strokes in every channel
    assert not torch.equal(colour[0, 1], colour[0, 2])  # channels differ in the background
    assert W.explorer_image(20, 1).shape == (1, 1, 20, 20)


# ------------------------------------------------------------------------------------- token pipeline


def test_token_pipeline_shapes_are_the_original_articles():
    shapes = dict(W.token_pipeline_shapes(batch_size=1, num_patches=4, model_dim=8, max_num_token=16))
    assert shapes == {
        "patch tokens": (1, 4, 8),
        "cls_token": (1, 1, 8),
        "expand": (1, 1, 8),
        "cat": (1, 5, 8),
        "position table": (16, 8),
        "slice": (5, 8),
        "tile": (1, 5, 8),
        "add": (1, 5, 8),
    }


def test_token_pipeline_tiles_the_slice_over_the_batch():
    shapes = dict(W.token_pipeline_shapes(batch_size=3, num_patches=9, model_dim=4, max_num_token=10))
    assert shapes["expand"] == (3, 1, 4)
    assert shapes["cat"] == (3, 10, 4)
    assert shapes["slice"] == (10, 4)
    assert shapes["tile"] == shapes["add"] == (3, 10, 4)


def test_token_pipeline_raises_the_packages_message_when_the_table_is_too_short():
    with pytest.raises(ValueError, match=r"21 tokens but position_table has only 16 rows \(max_num_token=16\)"):
        W.token_pipeline_shapes(num_patches=20, max_num_token=16)


def test_token_pipeline_shows_that_slicing_past_the_table_is_silent():
    pipeline = W.token_pipeline(batch_size=2, num_patches=20, model_dim=8, max_num_token=16)
    shapes = dict(pipeline.steps)
    assert shapes["slice"] == (16, 8)  # table[:21] quietly returns 16 rows
    assert shapes["tile"] == (2, 16, 8)
    assert "add" not in shapes
    assert "use a table with at least 21 rows" in pipeline.error


@pytest.mark.parametrize("name", ["batch_size", "num_patches", "model_dim", "max_num_token"])
def test_token_pipeline_names_the_bad_argument(name):
    with pytest.raises(ValueError, match=name):
        W.token_pipeline_shapes(**{name: 0})


# ------------------------------------------------------------------------------------------- attention


def test_attention_maps_have_one_row_per_token_summing_to_one():
    maps, _ = W.attention_maps_for_digit(num_heads=2, depth=3, digit=5)
    assert maps.shape == (3, 2, L, L)
    assert torch.allclose(maps.sum(-1), torch.ones(3, 2, L), atol=1e-5)


def test_attention_maps_are_those_of_a_seeded_digits_model():
    maps, trained = W.attention_maps_for_digit(num_heads=2, depth=1, digit=3)
    assert not trained
    config = dataclasses.replace(W._attention_base_config(), num_heads=2, depth=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ViT(config).eval()
    expected = model.attention_maps(W.digit_image(3))[0]  # [1, h, L, L]
    assert torch.allclose(maps[0], expected[0])


def test_attention_row_is_the_querys_row_of_that_layer_and_head():
    maps, _ = W.attention_maps_for_digit(num_heads=4, depth=2, digit=1)
    row = W.attention_row(num_heads=4, depth=2, layer=1, head=3, query=L - 1, digit=1)
    assert row.shape == (L,)
    assert torch.equal(row, maps[1, 3, L - 1])


@pytest.mark.parametrize(("arguments", "message"), [
    ({"layer": 2}, "layer must be an int from 0 to 1"),
    ({"head": 4}, "head must be an int from 0 to 3"),
    ({"query": L}, f"query must be an int from 0 to {L - 1}"),
    ({"query": -1}, f"query must be an int from 0 to {L - 1}"),
])
def test_attention_row_rejects_indices_outside_the_model(arguments, message):
    chosen = {"num_heads": 4, "depth": 2, "layer": 0, "head": 0, "query": 0, **arguments}
    with pytest.raises(ValueError, match=message):
        W.attention_row(**chosen)


def test_attention_maps_reject_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        W.attention_maps_for_digit(num_heads=3, depth=1)


def test_attention_maps_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    W.attention_maps_for_digit(num_heads=8, depth=2, digit=4)
    assert torch.equal(state, torch.random.get_rng_state())


# ------------------------------------------------------------------------------------------ model stats


@pytest.mark.parametrize(("name", "count"), [
    ("vit_tiny", 5_717_416), ("vit_small", 22_050_664), ("vit_base", 86_567_656),
    ("vit_large", 304_326_632), ("vit_huge", 632_045_800),
])
def test_model_stats_formula_and_count_agree_on_the_papers_models(name, count):
    config = PRESETS[name]
    stats = W.model_stats(config.depth, config.embed_dim, config.num_heads, config.mlp_ratio, config.patch_size,
                          config.img_size)
    assert stats.params_formula == stats.params_counted == count


def test_model_stats_of_vit_base():
    stats = W.model_stats()
    assert stats.seq_len == 197
    assert stats.config.head_dim == 64
    assert stats.flops == 35_127_656_448  # 17.6 G multiply-adds, the figure papers quote


def test_model_stats_counts_the_parameters_of_an_odd_configuration():
    stats = W.model_stats(depth=3, embed_dim=48, num_heads=6, mlp_ratio=2.5, patch_size=7, img_size=28,
                          in_chans=1, num_classes=7)
    model = ViT(stats.config)
    assert stats.params_counted == stats.params_formula == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", [get_config("digits"), get_config("toy"),
                                    get_config("digits", mlp_ratio=3.0, num_classes=0), get_config("vit_base")],
                         ids=["digits", "toy", "digits-no-head", "vit_base"])
def test_vit_flops_equal_torchs_flop_counter(config):
    with torch.device("meta"):
        model = ViT(config)
        image = torch.empty(1, config.in_chans, config.img_size, config.img_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    assert W.vit_flops(config)["total"] == counter.get_total_flops()


def test_model_stats_rejects_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="patch_size=5 does not divide"):
        W.model_stats(patch_size=5, img_size=224)


def test_model_stats_rejects_a_width_that_the_heads_do_not_divide():
    with pytest.raises(ValueError, match="embed_dim=100 is not divisible by num_heads=3"):
        W.model_stats(embed_dim=100, num_heads=3)


def test_vit_flops_rejects_anything_but_a_config():
    with pytest.raises(TypeError, match="config must be a ViTConfig"):
        W.vit_flops({"embed_dim": 8})


# ------------------------------------------------------------------------------------- widgets, headless


@pytest.fixture
def no_new_figures():
    """Every figure an explorer makes is closed in pyplot: none pile up (nbval fails on 'More than 20')."""
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


FACTORIES = [W.patch_explorer, W.token_explorer, W.attention_explorer, W.model_calculator]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda factory: factory.__name__)
def test_each_explorer_is_one_call_that_returns_a_drawn_widget(factory, no_new_figures):
    explorer = factory()
    assert isinstance(explorer, ipywidgets.Widget)
    assert explorer.redraws == 1
    assert bytes(explorer.figure.value).startswith(PNG_MAGIC)
    assert explorer.error is None
    assert "<table" in explorer.table.value


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda factory: factory.__name__)
def test_each_explorer_throttles_its_sliders(factory):
    sliders = [control for control in factory().controls.values()
               if isinstance(control, (ipywidgets.IntSlider, ipywidgets.FloatSlider, ipywidgets.SelectionSlider))]
    assert sliders
    assert all(slider.continuous_update is False for slider in sliders)


def _row(explorer: W.Explorer, step: str) -> str:
    """The text of the table row whose data-step is `step`."""
    table = explorer.table.value
    start = table.index(f"data-step='{step}'")
    return table[start:table.index("</tr>", start)]


def test_patch_explorer_shows_the_article_shapes_at_first(no_new_figures):
    explorer = W.patch_explorer()
    assert "[1, 48, 4]" in _row(explorer, "unfold")
    assert "[1, 4, 8]" in _row(explorer, "matmul")
    assert "[8, 3, 4, 4]" in _row(explorer, "kernel")
    assert "equals conv: True" in explorer.message.value


def test_patch_explorer_redraws_with_new_shapes_when_the_patch_size_moves(no_new_figures):
    explorer = W.patch_explorer()
    first_picture = bytes(explorer.figure.value)
    explorer.controls["patch_size"].value = 2
    assert explorer.redraws == 2
    assert bytes(explorer.figure.value) != first_picture
    assert "[1, 12, 16]" in _row(explorer, "unfold")
    assert "[1, 16, 8]" in _row(explorer, "transpose to tokens")
    assert "[1, 8, 4, 4]" in _row(explorer, "conv")


def test_patch_explorer_follows_every_control(no_new_figures):
    explorer = W.patch_explorer()
    explorer.controls["image_size"].value = 16
    explorer.controls["in_chans"].value = 1
    explorer.controls["model_dim"].value = 32
    assert explorer.redraws == 4
    assert "[1, 1, 16, 16]" in _row(explorer, "image")
    assert "[1, 16, 32]" in _row(explorer, "matmul")


def test_patch_explorer_explains_a_patch_size_that_does_not_divide(no_new_figures):
    explorer = W.patch_explorer()
    picture = bytes(explorer.figure.value)
    explorer.controls["patch_size"].value = 3
    assert "patch_size=3 does not divide the image height 8" in explorer.error
    assert "does not divide" in explorer.message.value
    assert "Traceback" not in explorer.message.value
    assert explorer.table.value == ""
    assert explorer.redraws == 1 and bytes(explorer.figure.value) == picture  # the last good picture stays
    explorer.controls["patch_size"].value = 8
    assert explorer.error is None
    assert "[1, 1, 8]" in _row(explorer, "matmul")


def test_token_explorer_shows_the_cls_concat_and_the_tiled_slice(no_new_figures):
    explorer = W.token_explorer()
    assert "[1, 5, 8]" in _row(explorer, "cat")
    explorer.controls["batch_size"].value = 4
    assert explorer.redraws == 2
    assert "[4, 1, 8]" in _row(explorer, "expand")
    assert "[4, 5, 8]" in _row(explorer, "tile")
    assert "[4, 5, 8]" in _row(explorer, "add")


def test_token_explorer_shows_the_packages_error_when_the_sequence_outgrows_the_table(no_new_figures):
    explorer = W.token_explorer()
    picture = bytes(explorer.figure.value)
    explorer.controls["num_patches"].value = 20
    assert "position_table has only 16 rows" in explorer.error
    assert "max_num_token=16" in explorer.message.value
    assert "only 16 of the 21 rows needed" in _row(explorer, "slice")
    assert "ValueError" in _row(explorer, "add")
    assert explorer.redraws == 2 and bytes(explorer.figure.value) != picture  # the picture shows the missing rows
    explorer.controls["max_num_token"].value = 21
    assert explorer.error is None
    assert "[1, 21, 8]" in _row(explorer, "add")


def test_attention_explorer_redraws_for_another_query(no_new_figures):
    explorer = W.attention_explorer(num_heads=4, depth=2)
    picture = bytes(explorer.figure.value)
    explorer.controls["query"].value = L - 1
    assert explorer.redraws == 2
    assert bytes(explorer.figure.value) != picture
    assert f"[{L}, {L}]" in explorer.table.value


def test_attention_explorer_keeps_layer_and_head_inside_the_model(no_new_figures):
    explorer = W.attention_explorer(num_heads=4, depth=4, layer=3, head=3)
    explorer.controls["depth"].value = 2
    assert explorer.controls["layer"].max == 1 and explorer.controls["layer"].value == 1
    explorer.controls["num_heads"].value = 2
    assert explorer.controls["head"].max == 1 and explorer.controls["head"].value == 1
    assert explorer.error is None
    assert f"2 x <b>[1, 2, {L}, {L}]</b>" in explorer.table.value


def test_attention_explorer_offers_only_heads_that_divide_the_width():
    explorer = W.attention_explorer()
    width = W._attention_base_config().embed_dim
    assert all(width % heads == 0 for heads in explorer.controls["num_heads"].options)


def test_model_calculator_buttons_set_the_presets(no_new_figures):
    calculator = W.model_calculator()
    for button in calculator.buttons:
        redraws = calculator.redraws
        button.click()
        name = W.CALCULATOR_PRESETS[button.description]
        config = PRESETS[name]
        assert calculator.redraws == redraws + 1  # one redraw per click, not one per slider
        assert calculator.controls["embed_dim"].value == config.embed_dim
        assert calculator.controls["patch_size"].value == config.patch_size
        assert calculator.error is None
        stats = W.model_stats(config.depth, config.embed_dim, config.num_heads, config.mlp_ratio,
                              config.patch_size, config.img_size)
        assert calculator.table.value.count(f"{stats.params_formula:,}") >= 2  # by the formula and counted


def test_model_calculator_explains_impossible_combinations(no_new_figures):
    calculator = W.model_calculator()
    calculator.controls["num_heads"].value = 5
    assert "embed_dim=768 is not divisible by num_heads=5" in calculator.message.value
    calculator.controls["num_heads"].value = 12
    assert calculator.error is None
    calculator.controls["patch_size"].value = 15
    assert "patch_size=15 does not divide" in calculator.message.value
    assert "Traceback" not in calculator.message.value


def test_model_calculator_reports_length_parameters_and_flops(no_new_figures):
    calculator = W.model_calculator()
    calculator.set(patch_size=32)
    assert calculator.redraws == 2
    stats = W.model_stats(patch_size=32)
    table = calculator.table.value
    assert f"<b>{stats.seq_len:,}</b>" in table and stats.seq_len == 50
    assert f"{stats.params_formula:,}" in table
    assert "(same)" in table


def test_set_rejects_an_unknown_control():
    with pytest.raises(ValueError, match="no control named"):
        W.token_explorer().set(patch_size=2)


def test_many_redraws_leave_no_figures_and_no_warnings(no_new_figures):
    explorer = W.patch_explorer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(21):  # matplotlib warns from the 21st open figure on
            explorer.controls["model_dim"].value = 1 + step % 7
    assert explorer.redraws == 22


def test_explorers_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    W.patch_explorer().controls["patch_size"].value = 2
    W.token_explorer().controls["batch_size"].value = 3
    W.model_calculator().apply_preset("vit_small")
    assert torch.equal(state, torch.random.get_rng_state())


def test_attention_uses_the_trained_model_only_where_heads_and_depth_match(monkeypatch):
    config = get_config("digits", num_heads=2, depth=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        trained = ViT(config).eval()
    monkeypatch.setattr(W, "_trained_digits_model", lambda: trained)
    W._attention_model.cache_clear()
    W._attention_maps.cache_clear()
    try:
        maps, is_trained = W.attention_maps_for_digit(num_heads=2, depth=2, digit=3)
        assert is_trained
        assert torch.allclose(maps[1], trained.attention_maps(W.digit_image(3))[1][0])
        assert not W.attention_maps_for_digit(num_heads=4, depth=2, digit=3)[1]
        explorer = W.attention_explorer()
        assert (explorer.controls["num_heads"].value, explorer.controls["depth"].value) == (2, 2)
        assert "trained digits model" in explorer.model_note.value
    finally:
        W._attention_model.cache_clear()
        W._attention_maps.cache_clear()


def test_attention_explorer_starts_from_the_shipped_model_or_the_preset():
    trained = W._trained_digits_model()
    config = trained.config if trained is not None else PRESETS["digits"]
    explorer = W.attention_explorer()
    assert (explorer.controls["num_heads"].value, explorer.controls["depth"].value) == (config.num_heads,
                                                                                         config.depth)
    assert ("trained digits model" in explorer.model_note.value) == (trained is not None)


@pytest.mark.parametrize(("factory", "arguments", "error", "message"), [
    (W.patch_explorer, {"image_size": 10}, ValueError, "image_size must be from 4 to 32 in steps of 4"),
    (W.patch_explorer, {"patch_size": 2.0}, TypeError, "patch_size must be an int"),
    (W.patch_explorer, {"model_dim": 65}, ValueError, "model_dim must be from 1 to 64"),
    (W.patch_explorer, {"in_chans": 2}, ValueError, "in_chans must be 1"),
    (W.patch_explorer, {"digit": 11}, ValueError, "digit must be an int from 0 to 9"),
    (W.token_explorer, {"max_num_token": 0}, ValueError, "max_num_token must be from 1 to 80"),
    (W.token_explorer, {"batch_size": "2"}, TypeError, "batch_size must be an int"),
    (W.attention_explorer, {"num_heads": 3}, ValueError, "num_heads must be one of"),
    (W.attention_explorer, {"num_heads": 4, "depth": 4, "layer": 4}, ValueError, "layer must be from 0 to 3"),
    (W.attention_explorer, {"num_heads": 4, "depth": 2, "head": 4}, ValueError, "head must be from 0 to 3"),
    (W.attention_explorer, {"query": L}, ValueError, f"query must be from 0 to {L - 1}"),
    (W.model_calculator, {"preset": "vit_gigantic"}, ValueError, "unknown preset 'vit_gigantic'"),
])
def test_explorers_name_a_bad_starting_value(factory, arguments, error, message):
    with pytest.raises(error, match=message):
        factory(**arguments)


def test_an_impossible_starting_choice_shows_its_message_and_no_picture():
    explorer = W.patch_explorer(patch_size=3)
    assert explorer.redraws == 0
    assert "patch_size=3 does not divide" in explorer.message.value
    assert "still shows" not in explorer.message.value


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_model_calculator_sliders_hold_every_preset(name):
    config = PRESETS[name]
    calculator = W.model_calculator(name)
    assert calculator.values() == {field: getattr(config, field) for field in calculator.controls}
    assert calculator.error is None


def test_apply_preset_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="unknown preset 'vit_xl'"):
        W.model_calculator().apply_preset("vit_xl")
