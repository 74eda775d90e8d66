"""vitsteps.viz: every figure draws what it is given, without warnings, and names the parameter it rejects.

Pictures are checked through what the axes hold: the arrays handed to `imshow`, bar sizes, line data, titles
and tick labels, so a figure that shows the wrong numbers fails even though it still "draws".
"""
from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vitsteps import viz  # noqa: E402
from vitsteps.model import get_config, parameter_formula  # noqa: E402
from vitsteps.patches import image_to_patches  # noqa: E402
from vitsteps.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    """Every test starts and ends with no open figure."""
    plt.close("all")
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def fixed_seed():
    torch.manual_seed(0)


def draw(plot: Callable[..., Figure], *args: object, **kwargs: object) -> Figure:
    """Call `plot` with every warning turned into an error, and check that it returned a figure and left its inputs
    alone."""
    inputs = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
    copies = [value.detach().clone() for value in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot(*args, **kwargs)
    assert isinstance(fig, Figure)
    for value, copy in zip(inputs, copies, strict=True):
        assert torch.equal(value, copy), "the plot changed its input tensor"
    return fig


def scaled(values: torch.Tensor) -> np.ndarray:
    """`values` mapped linearly onto [0, 1], as the figures show pictures."""
    values = values.detach().float()
    return ((values - values.min()) / (values.max() - values.min())).numpy()


def drawn(image: matplotlib.image.AxesImage) -> np.ndarray:
    """The array an `imshow` call holds, its masked (blank) pixels as NaN."""
    return np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)


def tick_texts(labels: list[matplotlib.text.Text]) -> list[str]:
    return [label.get_text() for label in labels]


def softmax_rows(*shape: int) -> torch.Tensor:
    """Random attention weights: every row sums to 1."""
    return torch.randn(*shape).softmax(dim=-1)


# --- grid_shape --------------------------------------------------------------------------------------------------


def test_grid_shape_is_the_smallest_near_square_grid_holding_every_panel():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shapes = {count: viz.grid_shape(count) for count in range(1, 40)}
    for count, (rows, cols) in shapes.items():
        assert rows * cols >= count, count
        assert (rows - 1) * cols < count, f"{count} panels leave a whole row empty in {rows}x{cols}"
        assert 0 <= cols - rows <= 1, f"{count} panels in {rows}x{cols} is not near square"


@pytest.mark.parametrize("count, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)])
def test_grid_shape_rejects_a_count_that_is_not_a_positive_int(count, error):
    with pytest.raises(error, match="count"):
        viz.grid_shape(count)


# --- plot_patch_grid ---------------------------------------------------------------------------------------------


def test_patch_grid_draws_the_image_its_grid_lines_and_numbered_patches():
    image = torch.arange(32.0).reshape(1, 4, 8)  # [C, H, W]
    fig = draw(viz.plot_patch_grid, image, 2)
    (ax,) = fig.axes
    np.testing.assert_allclose(drawn(ax.images[0]), scaled(image[0]))
    vertical = sorted(line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == line.get_xdata()[1])
    horizontal = sorted(line.get_ydata()[0] for line in ax.lines if line.get_ydata()[0] == line.get_ydata()[1])
    assert vertical == [-0.5, 1.5, 3.5, 5.5, 7.5]  # W/P + 1 edges
    assert horizontal == [-0.5, 1.5, 3.5]  # H/P + 1 edges
    assert [text.get_text() for text in ax.texts] == [str(n) for n in range(8)]
    assert ax.get_title() == "4x8 image, 2x4 patches of 2x2"


def test_patch_grid_draws_a_batch_of_one_rgb_image_in_colour_under_the_given_title():
    image = torch.rand(1, 3, 4, 4)  # [1, C, H, W]
    fig = draw(viz.plot_patch_grid, image, 4, title="one patch")
    ax = fig.axes[0]
    np.testing.assert_allclose(drawn(ax.images[0]), scaled(image[0]).transpose(1, 2, 0), rtol=1e-6)
    assert [text.get_text() for text in ax.texts] == ["0"]
    assert ax.get_title() == "one patch"


@pytest.mark.parametrize("shape, patch_size, side", [((1, 4, 8), 3, "height"), ((1, 4, 6), 4, "width")])
def test_patch_grid_rejects_a_patch_size_that_does_not_divide_the_image(shape, patch_size, side):
    with pytest.raises(ValueError, match=f"patch_size={patch_size} does not divide the image {side}"):
        viz.plot_patch_grid(torch.rand(shape), patch_size)


@pytest.mark.parametrize("patch_size, error", [(0, ValueError), ("2", TypeError)])
def test_patch_grid_rejects_a_patch_size_that_is_not_a_positive_int(patch_size, error):
    with pytest.raises(error, match="patch_size"):
        viz.plot_patch_grid(torch.rand(1, 4, 4), patch_size)


def test_patch_grid_rejects_an_image_without_a_channel_dimension():
    with pytest.raises(ValueError, match="image must be a tensor with 3 dimensions"):
        viz.plot_patch_grid(torch.rand(4, 4), 2)


def test_patch_grid_rejects_integer_pixels():
    with pytest.raises(TypeError, match="image must be a floating-point tensor"):
        viz.plot_patch_grid(torch.zeros(1, 4, 4, dtype=torch.uint8), 2)


# --- plot_patch_sequence -----------------------------------------------------------------------------------------


def test_patch_sequence_draws_one_titled_panel_per_patch_in_reading_order():
    image = torch.randn(1, 1, 4, 4)  # [B, C, H, W]
    patches = image_to_patches(image, 2)  # [1, N, C*P*P]
    with warnings.catch_warnings():  # test_patch_sequence_emits_no_warnings covers them
        warnings.simplefilter("ignore")
        fig = viz.plot_patch_sequence(patches, 2)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2", "3"]
    expected = scaled(patches[0]).reshape(4, 2, 2)  # one colour scale for all patches
    for index, ax in enumerate(fig.axes):
        np.testing.assert_allclose(drawn(ax.images[0]), expected[index], rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([drawn(ax.images[0]) for ax in fig.axes[:2]], axis=1),
                               scaled(image[0, 0])[:2], rtol=1e-6)  # patches 0 and 1 are the top strip
    assert fig.get_suptitle() == "4 patches as a sequence of tokens"


def test_patch_sequence_draws_rgb_patches_in_colour():
    patches = torch.rand(2, 3 * 2 * 2)  # [N, C*P*P]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = viz.plot_patch_sequence(patches, 2, in_chans=3, title="rgb")
    expected = scaled(patches).reshape(2, 3, 2, 2).transpose(0, 2, 3, 1)
    for index, ax in enumerate(fig.axes):
        np.testing.assert_allclose(drawn(ax.images[0]), expected[index], rtol=1e-6)
    assert fig.get_suptitle() == "rgb"


def test_patch_sequence_rejects_patches_cut_with_another_patch_size():
    with pytest.raises(ValueError, match="in_chans and patch_size they were cut with"):
        viz.plot_patch_sequence(torch.rand(4, 4), 3)


def test_patch_sequence_rejects_a_single_patch_without_the_sequence_dimension():
    with pytest.raises(ValueError, match="patches must be a tensor with 2 dimensions"):
        viz.plot_patch_sequence(torch.rand(4), 2)


# --- plot_matrix -------------------------------------------------------------------------------------------------


def test_matrix_draws_the_values_with_labels_a_colour_bar_and_the_numbers_written_in():
    matrix = torch.randn(2, 3)
    fig = draw(viz.plot_matrix, matrix, title="scores", xlabel="key", ylabel="query", cmap="magma")
    assert len(fig.axes) == 2  # heatmap and colour bar
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn(ax.images[0]), matrix.numpy())
    assert ax.images[0].get_cmap().name == "magma"
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("scores", "key", "query")
    assert sorted(text.get_text() for text in ax.texts) == sorted(f"{value:.2f}" for value in matrix.flatten().tolist())


@pytest.mark.parametrize("shape, annotate", [((5, 13), None), ((2, 2), False)])
def test_matrix_leaves_the_numbers_out_of_a_large_matrix_or_when_asked(shape, annotate):
    fig = draw(viz.plot_matrix, torch.rand(shape), annotate=annotate)
    assert not fig.axes[0].texts


def test_matrix_rejects_a_vector():
    with pytest.raises(ValueError, match="matrix must be a tensor with 2 dimensions"):
        viz.plot_matrix(torch.rand(3))


def test_matrix_rejects_a_nested_list():
    with pytest.raises(TypeError, match="matrix must be a torch.Tensor"):
        viz.plot_matrix([[1.0, 2.0]])


def test_matrix_rejects_integer_values():
    with pytest.raises(TypeError, match="matrix must be a floating-point tensor"):
        viz.plot_matrix(torch.ones(2, 2, dtype=torch.long))


# --- plot_kernel_filters -----------------------------------------------------------------------------------------


def test_kernel_filters_draw_one_panel_per_dimension_and_channel_on_one_symmetric_scale():
    kernel = torch.randn(4, 3, 2, 2)  # [D, C, P, P]
    fig = draw(viz.plot_kernel_filters, kernel)
    panels, colour_bar = fig.axes[:-1], fig.axes[-1]
    assert len(panels) == 3 * 4 and not colour_bar.images
    limit = float(kernel.abs().max())
    for c in range(3):
        for d in range(4):
            image = panels[c * 4 + d].images[0]
            np.testing.assert_array_equal(drawn(image), kernel[d, c].numpy())
            assert image.get_clim() == pytest.approx((-limit, limit))
    assert [ax.get_title() for ax in panels[:4]] == ["d=0", "d=1", "d=2", "d=3"]
    assert [panels[c * 4].get_ylabel() for c in range(3)] == ["R", "G", "B"]
    assert "D=4, C=3, P=2, P=2" in fig.get_suptitle()


def test_kernel_filters_name_non_rgb_channels_by_index():
    fig = draw(viz.plot_kernel_filters, torch.randn(2, 2, 3, 3), title="two channels")
    assert [fig.axes[c * 2].get_ylabel() for c in range(2)] == ["c=0", "c=1"]
    assert fig.get_suptitle() == "two channels"


def test_kernel_filters_reject_a_flat_weight_matrix():
    with pytest.raises(ValueError, match="kernel must be a tensor with 4 dimensions"):
        viz.plot_kernel_filters(torch.randn(4, 12))


def test_kernel_filters_reject_a_list():
    with pytest.raises(TypeError, match="kernel must be a torch.Tensor"):
        viz.plot_kernel_filters([[[[1.0]]]])


# --- plot_token_sequence -----------------------------------------------------------------------------------------


def test_token_sequence_stacks_the_batch_and_boxes_every_cls_row():
    tokens = torch.randn(2, 3, 4)  # [B, L, D]
    fig = draw(viz.plot_token_sequence, tokens)
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn(ax.images[0]), tokens.reshape(6, 4).numpy())
    assert tick_texts(ax.get_yticklabels()) == ["0: CLS", "0: patch 0", "0: patch 1",
                                                "1: CLS", "1: patch 0", "1: patch 1"]
    assert [patch.get_y() for patch in ax.patches] == [-0.5, 2.5]  # the CLS row of each sample
    assert [patch.get_height() for patch in ax.patches] == [1, 1]
    assert [line.get_ydata()[0] for line in ax.lines] == [2.5]  # one line between the two samples
    assert ax.get_title() == "tokens [B=2, L=3, D=4]"


def test_token_sequence_of_one_sequence_has_no_sample_prefix_and_no_separator():
    fig = draw(viz.plot_token_sequence, torch.randn(3, 2), num_prefix_tokens=2, title="two prefixes")
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == ["prefix 0", "prefix 1", "patch 0"]
    assert [patch.get_height() for patch in ax.patches] == [2]
    assert not ax.lines
    assert ax.get_title() == "two prefixes"


def test_token_sequence_without_prefix_boxes_nothing():
    fig = draw(viz.plot_token_sequence, torch.randn(1, 2, 2), num_prefix_tokens=0)
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == ["patch 0", "patch 1"]
    assert not ax.patches


def test_token_sequence_rejects_more_prefix_tokens_than_tokens():
    with pytest.raises(ValueError, match="num_prefix_tokens=4 but the sequences have only L=3"):
        viz.plot_token_sequence(torch.randn(3, 2), num_prefix_tokens=4)


def test_token_sequence_rejects_a_negative_prefix_count():
    with pytest.raises(ValueError, match="num_prefix_tokens must be an int >= 0"):
        viz.plot_token_sequence(torch.randn(3, 2), num_prefix_tokens=-1)


@pytest.mark.parametrize("num_prefix_tokens", ["1", 1.0, True])
def test_token_sequence_rejects_a_prefix_count_that_is_not_an_int(num_prefix_tokens):
    with pytest.raises((TypeError, ValueError), match="num_prefix_tokens must be an int >= 0"):
        viz.plot_token_sequence(torch.randn(3, 2), num_prefix_tokens=num_prefix_tokens)


def test_token_sequence_rejects_a_single_token():
    with pytest.raises(ValueError, match="tokens must be a tensor with 3 dimensions"):
        viz.plot_token_sequence(torch.randn(4))


def test_token_sequence_rejects_a_list():
    with pytest.raises(TypeError, match="tokens must be a torch.Tensor"):
        viz.plot_token_sequence([[1.0, 2.0]])


# --- plot_position_similarity ------------------------------------------------------------------------------------


def test_position_similarity_panel_r_c_is_the_cosine_of_patch_r_c_with_every_patch():
    rows, cols = 2, 3
    position_table = torch.randn(1 + rows * cols, 8)  # [1 + N, D], CLS row first
    fig = draw(viz.plot_position_similarity, position_table, (rows, cols))
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # mosaic and colour bar
    mosaic = drawn(ax.images[0])
    assert mosaic.shape == (rows * (rows + 1) - 1, cols * (cols + 1) - 1)
    unit_rows = torch.nn.functional.normalize(position_table[1:], dim=1)  # [N, D]
    cosine = (unit_rows @ unit_rows.T).reshape(rows, cols, rows, cols)
    for r in range(rows):
        for c in range(cols):
            panel = mosaic[r * (rows + 1):r * (rows + 1) + rows, c * (cols + 1):c * (cols + 1) + cols]
            np.testing.assert_allclose(panel, cosine[r, c].numpy(), atol=1e-6)
            assert panel[r, c] == pytest.approx(1.0)
    assert np.isnan(mosaic[rows, :]).all() and np.isnan(mosaic[:, cols]).all()  # blank gaps between panels
    assert tick_texts(ax.get_xticklabels()) == ["0", "1", "2"]
    assert tick_texts(ax.get_yticklabels()) == ["0", "1"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("patch column", "patch row")


def test_position_similarity_takes_a_batched_table_without_prefix_rows():
    position_table = torch.randn(1, 4, 6)  # [1, N, D], as ViT.pos_embed without CLS
    fig = draw(viz.plot_position_similarity, position_table, 2, num_prefix_tokens=0, title="no CLS")
    mosaic = drawn(fig.axes[0].images[0])
    unit_rows = torch.nn.functional.normalize(position_table[0], dim=1)
    np.testing.assert_allclose(mosaic[:2, :2], (unit_rows @ unit_rows[0]).reshape(2, 2).numpy(), atol=1e-6)
    assert fig.axes[0].get_title() == "no CLS"


def test_position_similarity_rejects_a_table_made_for_another_grid():
    with pytest.raises(ValueError, match="position_table has 17 rows but a 3x3 grid after 1 prefix rows needs 10"):
        viz.plot_position_similarity(torch.randn(17, 8), 3)


@pytest.mark.parametrize("grid_size, error", [(0, ValueError), (2.5, TypeError), ((2, 2, 2), ValueError),
                                              ((2, 0), ValueError)])
def test_position_similarity_rejects_a_bad_grid_size(grid_size, error):
    with pytest.raises(error, match="grid_size"):
        viz.plot_position_similarity(torch.randn(5, 8), grid_size)


def test_position_similarity_rejects_a_negative_prefix_count():
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        viz.plot_position_similarity(torch.randn(5, 8), 2, num_prefix_tokens=-1)


def test_position_similarity_rejects_a_single_row():
    with pytest.raises(ValueError, match="position_table must be a tensor with 2 dimensions"):
        viz.plot_position_similarity(torch.randn(8), 2)


def test_position_similarity_rejects_a_list():
    with pytest.raises(TypeError, match="position_table must be a torch.Tensor"):
        viz.plot_position_similarity([[1.0]], 1, num_prefix_tokens=0)


# --- plot_attention_heads ----------------------------------------------------------------------------------------


def test_attention_heads_draw_one_labelled_map_per_head_on_one_scale():
    weights = softmax_rows(3, 4, 4)  # [h, L, L]
    fig = draw(viz.plot_attention_heads, weights)
    panels, colour_bar = fig.axes[:4], fig.axes[4]
    assert len(fig.axes) == 2 * 2 + 1 and not colour_bar.images  # grid_shape(3) = 2x2, and a colour bar
    largest = float(weights.max())
    for head in range(3):
        image = panels[head].images[0]
        np.testing.assert_array_equal(drawn(image), weights[head].numpy())
        assert image.get_clim() == pytest.approx((0, largest))
        assert panels[head].get_title() == f"head {head}"
        assert tick_texts(panels[head].get_xticklabels()) == ["CLS", "p0", "p1", "p2"]
        assert tick_texts(panels[head].get_yticklabels()) == ["CLS", "p0", "p1", "p2"]
    assert not panels[3].axison and not panels[3].images  # the spare panel is blank
    assert fig.get_suptitle().startswith("attention weights of 3 heads")


def test_attention_heads_take_one_head_or_a_batch_of_one_with_own_labels():
    one_head = draw(viz.plot_attention_heads, softmax_rows(2, 2), token_labels=["a", "b"], title="one")
    assert len(one_head.axes) == 2 and one_head.axes[0].get_title() == "head 0"
    assert tick_texts(one_head.axes[0].get_xticklabels()) == ["a", "b"]
    assert one_head.get_suptitle() == "one"
    weights = softmax_rows(1, 2, 3, 3)  # [1, h, L, L]
    batched = draw(viz.plot_attention_heads, weights)
    np.testing.assert_array_equal(drawn(batched.axes[1].images[0]), weights[0, 1].numpy())


def test_attention_heads_leave_out_the_ticks_of_long_sequences():
    fig = draw(viz.plot_attention_heads, softmax_rows(1, 21, 21))
    assert len(fig.axes[0].get_xticks()) == 0


def test_attention_heads_reject_non_square_weights():
    with pytest.raises(ValueError, match="weights must be square"):
        viz.plot_attention_heads(softmax_rows(2, 3, 4))


def test_attention_heads_reject_the_wrong_number_of_token_labels():
    with pytest.raises(ValueError, match="token_labels has 2 names but there are L=3 tokens"):
        viz.plot_attention_heads(softmax_rows(2, 3, 3), token_labels=["a", "b"])


def test_attention_heads_reject_a_batch_of_several_samples():
    with pytest.raises(ValueError, match="weights must be a tensor with 3 dimensions"):
        viz.plot_attention_heads(softmax_rows(2, 2, 3, 3))


def test_attention_heads_reject_a_list():
    with pytest.raises(TypeError, match="weights must be a torch.Tensor"):
        viz.plot_attention_heads([[1.0]])


# --- plot_parameter_breakdown ------------------------------------------------------------------------------------


def test_parameter_breakdown_draws_a_labelled_bar_per_part_and_leaves_out_the_total():
    parts = {"embedding": 100, "blocks": 900, "head": 0, "total": 1000}
    fig = draw(viz.plot_parameter_breakdown, parts)
    ax = fig.axes[0]
    assert [bar.get_width() for bar in ax.patches] == [100, 900, 1]  # empty parts drawn at 1 on the log scale
    assert ax.get_xscale() == "log"
    assert tick_texts(ax.get_yticklabels()) == ["embedding", "blocks", "head"]
    assert [text.get_text() for text in ax.texts] == ["100 (10.0%)", "900 (90.0%)", "0 (0.0%)"]
    assert ax.get_title() == "1,000 parameters by part"


def test_parameter_breakdown_of_a_real_config_without_its_total_sums_the_parts():
    formula = parameter_formula(get_config("toy"))
    parts = {name: count for name, count in formula.items() if name != "total"}
    fig = draw(viz.plot_parameter_breakdown, parts, title="toy")
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == list(parts)
    assert [bar.get_width() for bar in ax.patches] == [max(count, 1) for count in parts.values()]
    shares = [text.get_text().split(" (")[1] for text in ax.texts]
    assert shares == [f"{count / formula['total']:.1%})" for count in parts.values()]
    assert ax.get_title() == "toy"


@pytest.mark.parametrize("parts", [[("a", 1)], {}, None])
def test_parameter_breakdown_rejects_anything_but_a_non_empty_dict(parts):
    with pytest.raises(TypeError, match="parts must be a non-empty dict"):
        viz.plot_parameter_breakdown(parts)


@pytest.mark.parametrize("count", [-1, 2.5, True, "10"])
def test_parameter_breakdown_rejects_a_count_that_is_not_a_whole_number(count):
    with pytest.raises(ValueError, match=r"parts\['a'\] must be a count"):
        viz.plot_parameter_breakdown({"a": count, "b": 1})


# --- plot_class_scores -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [2, torch.tensor(2)], ids=["int", "tensor"])
def test_class_scores_draw_the_logits_and_their_softmax_with_the_true_class_marked(label):
    logits = torch.randn(1, 4)  # [1, K]
    fig = draw(viz.plot_class_scores, logits, label=label)
    left, right = fig.axes
    assert [bar.get_height() for bar in left.patches] == pytest.approx(logits[0].tolist())
    assert [bar.get_height() for bar in right.patches] == pytest.approx(logits[0].softmax(0).tolist())
    for ax in (left, right):
        colours = [bar.get_facecolor() for bar in ax.patches]
        assert colours[2] == to_rgba("tab:orange")
        assert all(colour == to_rgba("tab:blue") for k, colour in enumerate(colours) if k != 2)
        assert tick_texts(ax.get_xticklabels()) == ["0", "1", "2", "3"]
    uniform = [line for line in right.lines if line.get_linestyle() == "--"]
    assert len(uniform) == 1 and list(uniform[0].get_ydata()) == [0.25, 0.25]
    assert (left.get_title(), right.get_title()) == ("logits", "softmax probabilities")
    assert fig.get_suptitle() == "true class 2 in orange"


def test_class_scores_without_a_label_mark_nothing_and_have_no_heading():
    fig = draw(viz.plot_class_scores, torch.randn(3))
    assert all(bar.get_facecolor() == to_rgba("tab:blue") for bar in fig.axes[0].patches)
    assert fig.get_suptitle() == ""


@pytest.mark.parametrize("label", [3, -1])
def test_class_scores_reject_a_label_outside_the_classes(label):
    with pytest.raises(ValueError, match=r"label must be a class index in \[0, 3\)"):
        viz.plot_class_scores(torch.randn(3), label=label)


def test_class_scores_reject_a_batch_of_several_samples():
    with pytest.raises(ValueError, match="logits must be a tensor with 1 dimensions"):
        viz.plot_class_scores(torch.randn(2, 3))


def test_class_scores_reject_integer_scores():
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        viz.plot_class_scores(torch.tensor([1, 2, 3]))


def test_class_scores_reject_a_list():
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        viz.plot_class_scores([0.1, 0.9])


# --- patch_mosaic ------------------------------------------------------------------------------------------------


def test_patch_mosaic_tiles_the_patches_in_reading_order_with_blank_gaps():
    patches = torch.randn(1, 5, 4)  # [1, N, C*P*P], P=2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mosaic = viz.patch_mosaic(patches, 2, per_row=3)
    assert isinstance(mosaic, np.ndarray) and mosaic.shape == (2 * 3 - 1, 3 * 3 - 1)  # gap of 1 pixel
    tiles = scaled(patches[0]).reshape(5, 2, 2)
    for index in range(5):
        row, col = divmod(index, 3)
        np.testing.assert_allclose(mosaic[row * 3:row * 3 + 2, col * 3:col * 3 + 2], tiles[index], rtol=1e-6)
    assert np.isnan(mosaic[2, :]).all() and np.isnan(mosaic[:, 2]).all()
    assert np.isnan(mosaic[3:, 6:]).all()  # the empty sixth place
    assert np.nanmin(mosaic) == 0 and np.nanmax(mosaic) == 1


def test_patch_mosaic_of_rgb_patches_has_colour_channels_and_white_gaps():
    patches = torch.rand(2, 3 * 4 * 4)  # [N, C*P*P], P=4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mosaic = viz.patch_mosaic(patches, 4, in_chans=3)
    assert mosaic.shape == (4, 2 * 4 + 1, 3)  # gap of P // 4 = 1 pixel
    tiles = scaled(patches).reshape(2, 3, 4, 4).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(mosaic[:, :4], tiles[0], rtol=1e-6)
    np.testing.assert_allclose(mosaic[:, 5:], tiles[1], rtol=1e-6)
    assert (mosaic[:, 4] == 1.0).all()


def test_patch_mosaic_of_a_real_image_puts_the_pixels_back_in_place():
    image = torch.rand(1, 1, 4, 4)  # [B, C, H, W]
    mosaic = viz.patch_mosaic(image_to_patches(image, 2), 2, per_row=2)
    np.testing.assert_allclose(np.delete(np.delete(mosaic, 2, axis=0), 2, axis=1), scaled(image[0, 0]), rtol=1e-6)


@pytest.mark.parametrize("keyword, value, error", [("patch_size", 0, ValueError), ("patch_size", "2", TypeError),
                                                   ("per_row", 0, ValueError), ("per_row", 1.5, TypeError),
                                                   ("in_chans", 2, ValueError)])
def test_patch_mosaic_rejects_a_bad_size(keyword, value, error):
    arguments = {"patches": torch.rand(4, 4), "patch_size": 2, "in_chans": 1, "per_row": 16, keyword: value}
    with pytest.raises(error, match=keyword):
        viz.patch_mosaic(**arguments)


def test_patch_mosaic_rejects_patches_cut_with_another_patch_size():
    with pytest.raises(ValueError, match="in_chans and patch_size they were cut with"):
        viz.patch_mosaic(torch.rand(4, 12), 2)


def test_patch_mosaic_rejects_a_single_patch():
    with pytest.raises(ValueError, match="patches must be a tensor with 2 dimensions"):
        viz.patch_mosaic(torch.rand(4), 2)


def test_patch_mosaic_rejects_a_list():
    with pytest.raises(TypeError, match="patches must be a torch.Tensor"):
        viz.patch_mosaic([[0.0] * 4], 2)


# --- plot_patches_to_tokens --------------------------------------------------------------------------------------


def test_patches_to_tokens_shows_the_grid_the_sequence_and_the_tokens():
    image = torch.rand(1, 4, 8)  # [C, H, W]
    patch_tokens = torch.randn(1, 8, 5)  # [1, N, D]
    fig = draw(viz.plot_patches_to_tokens, image, 2, patch_tokens, title="three views")
    grid, sequence, tokens = fig.axes
    np.testing.assert_allclose(drawn(grid.images[0]), scaled(image[0]))
    vertical, horizontal = (collection.get_segments() for collection in grid.collections)
    assert [segment[0][0] for segment in vertical] == [-0.5, 1.5, 3.5, 5.5, 7.5]
    assert [segment[0][1] for segment in horizontal] == [-0.5, 1.5, 3.5]
    assert [text.get_text() for text in grid.texts] == [str(n) for n in range(8)]
    expected_mosaic = viz.patch_mosaic(image_to_patches(image.unsqueeze(0), 2), 2, per_row=8)
    np.testing.assert_allclose(drawn(sequence.images[0]), expected_mosaic, rtol=1e-5, atol=1e-6)
    assert [text.get_text() for text in sequence.texts] == [str(n) for n in range(8)]
    assert "8 patches in reading order" in sequence.get_title()
    np.testing.assert_array_equal(drawn(tokens.images[0]), patch_tokens[0].numpy())
    assert tokens.get_title().startswith("patch tokens [N, D] = [8, 5]")
    assert fig.get_suptitle() == "three views"


def test_patches_to_tokens_without_tokens_has_two_panels_and_leaves_many_patches_unnumbered():
    fig = draw(viz.plot_patches_to_tokens, torch.rand(3, 18, 18), 2)  # 81 RGB patches
    grid, sequence = fig.axes
    assert drawn(grid.images[0]).shape == (18, 18, 3)
    assert not grid.texts and not sequence.texts
    assert "each 3x2x2 = 12 values" in sequence.get_title()


@pytest.mark.parametrize("patch_size, error, words", [(3, ValueError, "patch_size=3 does not divide"),
                                                      (0, ValueError, "patch_size"), ("2", TypeError, "patch_size")])
def test_patches_to_tokens_rejects_a_bad_patch_size(patch_size, error, words):
    with pytest.raises(error, match=words):
        viz.plot_patches_to_tokens(torch.rand(1, 4, 4), patch_size)


def test_patches_to_tokens_rejects_tokens_of_another_image():
    with pytest.raises(ValueError, match="patch_tokens has 3 rows but the image has N=4 patches"):
        viz.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, torch.randn(3, 5))


def test_patches_to_tokens_rejects_tokens_given_as_a_list():
    with pytest.raises(TypeError, match="patch_tokens must be a torch.Tensor"):
        viz.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, [[0.0] * 5] * 4)


def test_patches_to_tokens_rejects_a_figure_that_is_not_a_figure():
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        viz.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, fig="figure")


def test_patches_to_tokens_rejects_an_image_given_as_an_array():
    with pytest.raises(TypeError, match="image must be a torch.Tensor"):
        viz.plot_patches_to_tokens(np.zeros((1, 4, 4), np.float32), 2)


def test_patches_to_tokens_rejects_an_image_without_a_channel_dimension():
    with pytest.raises(ValueError, match="image must be a tensor with 3 dimensions"):
        viz.plot_patches_to_tokens(torch.rand(4, 4), 2)


# --- plot_token_assembly -----------------------------------------------------------------------------------------


def test_token_assembly_puts_cls_first_in_every_sample_and_frames_the_rows_used():
    position_table = torch.randn(6, 3)  # [max_num_token, D]
    fig = draw(viz.plot_token_assembly, 2, 4, position_table)
    sequences, table = fig.axes
    kinds = drawn(sequences.images[0])
    assert kinds.shape == (2, 5)  # [B, N+1]
    assert (kinds[:, 0] == 0).all() and (kinds[:, 1:] == 1).all()
    assert [text.get_text() for text in sequences.texts] == ["CLS", "0", "1", "2", "3"] * 2
    assert "[2, 5, 3]" in sequences.get_title()
    np.testing.assert_array_equal(drawn(table.images[0]), position_table.numpy())
    (frame,) = table.patches
    assert (frame.get_y(), frame.get_height(), frame.get_width()) == (-0.5, 5, 3)
    assert frame.get_edgecolor() == to_rgba("tab:green")
    assert "rows [:5]" in table.get_title() and "x2" in table.get_title()


def test_token_assembly_marks_the_rows_missing_from_a_short_table_in_red():
    fig = draw(viz.plot_token_assembly, 1, 6, torch.randn(4, 2), title="too long")
    table = fig.axes[1]
    frame, missing = table.patches
    assert frame.get_height() == 4
    assert (missing.get_y(), missing.get_height()) == (3.5, 3)  # 7 tokens needed, 4 rows exist
    assert missing.get_edgecolor() == to_rgba("tab:red")
    assert "7 rows needed" in table.get_title() and "only 4 exist" in table.get_title()
    assert table.get_ylim() == (6.5, -0.5)
    assert fig.get_suptitle() == "too long"


@pytest.mark.parametrize("keyword, value, error", [("batch_size", 0, ValueError), ("batch_size", "2", TypeError),
                                                   ("num_patches", 0, ValueError), ("num_patches", 2.0, TypeError)])
def test_token_assembly_rejects_a_count_that_is_not_a_positive_int(keyword, value, error):
    arguments = {"batch_size": 2, "num_patches": 4, "position_table": torch.randn(6, 3), keyword: value}
    with pytest.raises(error, match=keyword):
        viz.plot_token_assembly(**arguments)


def test_token_assembly_rejects_a_batched_position_table():
    with pytest.raises(ValueError, match="position_table must be a tensor with 2 dimensions"):
        viz.plot_token_assembly(2, 4, torch.randn(1, 6, 3))


def test_token_assembly_rejects_a_list():
    with pytest.raises(TypeError, match="position_table must be a torch.Tensor"):
        viz.plot_token_assembly(2, 4, [[0.0] * 3] * 6)


# --- plot_attention_on_image -------------------------------------------------------------------------------------


def test_attention_on_image_frames_the_query_patch_and_lays_its_weights_over_the_grid():
    image = torch.rand(1, 4, 6)  # [C, H, W], 2x3 patches of 2
    weights = softmax_rows(7, 7)  # [L, L]
    fig = draw(viz.plot_attention_on_image, image, weights, 2, 5)  # token 5 = patch 4 = row 1, col 1
    grid, overlay, matrix = fig.axes
    np.testing.assert_allclose(drawn(grid.images[0]), scaled(image[0]))
    (query_frame,) = grid.patches
    assert query_frame.get_xy() == (1.5, 1.5) and query_frame.get_width() == 2
    assert grid.get_title().startswith("query: patch 4 (token 5)")
    heat = weights[5, 1:].reshape(2, 3).numpy()
    np.testing.assert_allclose(drawn(overlay.images[1]), heat)
    assert overlay.images[1].get_extent() == [-0.5, 5.5, 3.5, -0.5]  # one cell per patch, over the image
    assert overlay.images[1].get_clim() == pytest.approx((heat.min(), heat.max()))
    assert f"CLS gets {float(weights[5, 0]):.3f}" in overlay.get_title()
    np.testing.assert_array_equal(drawn(matrix.images[0]), weights.numpy())
    (row_frame,) = matrix.patches
    assert (row_frame.get_y(), row_frame.get_height(), row_frame.get_width()) == (4.5, 1, 7)
    assert tick_texts(matrix.get_xticklabels())[0] == "CLS"


def test_attention_on_image_of_the_cls_query_frames_no_patch():
    weights = softmax_rows(5, 5)
    fig = draw(viz.plot_attention_on_image, torch.rand(1, 4, 4), weights, 2, 0, title="CLS")
    grid, overlay, matrix = fig.axes
    assert not grid.patches
    assert "the CLS token" in grid.get_title()
    np.testing.assert_allclose(drawn(overlay.images[1]), weights[0, 1:].reshape(2, 2).numpy())
    assert matrix.patches[0].get_y() == -0.5
    assert fig.get_suptitle() == "CLS"


def test_attention_on_image_rejects_an_image_given_as_an_array():
    with pytest.raises(TypeError, match="image must be a torch.Tensor"):
        viz.plot_attention_on_image(np.zeros((1, 4, 4), np.float32), softmax_rows(5, 5), 2, 0)


def test_attention_on_image_rejects_weights_for_another_number_of_patches():
    with pytest.raises(ValueError, match=r"weights must be \[L, L\] with L = 1 \+ 4 patches"):
        viz.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(4, 4), 2, 0)


def test_attention_on_image_rejects_the_weights_of_all_heads():
    with pytest.raises(ValueError, match="weights must be a tensor with 2 dimensions"):
        viz.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(2, 5, 5), 2, 0)


def test_attention_on_image_rejects_weights_given_as_a_list():
    with pytest.raises(TypeError, match="weights must be a torch.Tensor"):
        viz.plot_attention_on_image(torch.rand(1, 4, 4), [[0.2] * 5] * 5, 2, 0)


@pytest.mark.parametrize("query", [5, -1, True, 1.0, "1"])
def test_attention_on_image_rejects_a_query_that_is_not_a_token_index(query):
    with pytest.raises(ValueError, match=r"query must be an int in 0..4"):
        viz.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(5, 5), 2, query)


@pytest.mark.parametrize("patch_size, error, words", [(3, ValueError, "patch_size=3 does not divide"),
                                                      (0, ValueError, "patch_size"), (2.0, TypeError, "patch_size")])
def test_attention_on_image_rejects_a_bad_patch_size(patch_size, error, words):
    with pytest.raises(error, match=words):
        viz.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(5, 5), patch_size, 0)


# --- plot_cost_breakdown -----------------------------------------------------------------------------------------


def test_cost_breakdown_draws_parameters_and_flops_part_by_part_with_si_totals():
    parameters = {"embedding": 1_500, "blocks": 1_233_067, "total": 1_234_567}
    flops = {"embedding": 2_000, "blocks": 3_000_000_000, "head": 0}
    fig = draw(viz.plot_cost_breakdown, parameters, flops, title="costs")
    left, right = fig.axes
    assert [bar.get_width() for bar in left.patches] == [1_500, 1_233_067]
    assert [bar.get_width() for bar in right.patches] == [2_000, 3_000_000_000, 0]
    left_labels, right_labels = tick_texts(left.get_yticklabels()), tick_texts(right.get_yticklabels())
    assert [label.split()[0] for label in left_labels] == ["embedding", "blocks"]
    assert [label.split()[0] for label in right_labels] == ["embedding", "blocks", "head"]
    written = " | ".join(left_labels + [text.get_text() for text in left.texts])  # count and share of each part
    assert "1.5K (0%)" in written and "1.23M (100%)" in written
    assert left.get_title() == "parameters: 1.23M"
    assert right.get_title() == "FLOPs per image: 3G"
    assert fig.get_suptitle() == "costs"


@pytest.mark.parametrize("keyword", ["parameters", "flops"])
@pytest.mark.parametrize("value", [{}, [("a", 1)]])
def test_cost_breakdown_rejects_anything_but_a_non_empty_dict(keyword, value):
    arguments = {"parameters": {"a": 1}, "flops": {"a": 1}, keyword: value}
    with pytest.raises(TypeError, match=f"{keyword} must be a non-empty dict"):
        viz.plot_cost_breakdown(**arguments)


@pytest.mark.parametrize("keyword", ["parameters", "flops"])
def test_cost_breakdown_rejects_parts_with_only_a_total(keyword):
    arguments = {"parameters": {"a": 1}, "flops": {"a": 1}, keyword: {"total": 5}}
    with pytest.raises(ValueError, match=f"{keyword} must hold at least one part besides 'total'"):
        viz.plot_cost_breakdown(**arguments)


@pytest.mark.parametrize("keyword", ["parameters", "flops"])
@pytest.mark.parametrize("count", [-5, "5", 2.5, True])
def test_cost_breakdown_rejects_a_count_that_is_not_a_whole_number(keyword, count):
    arguments = {"parameters": {"a": 1}, "flops": {"a": 1}, keyword: {"a": count}}
    with pytest.raises(ValueError, match=rf"{keyword}\['a'\] must be a count"):
        viz.plot_cost_breakdown(**arguments)


def test_cost_breakdown_rejects_a_figure_that_is_not_a_figure():
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        viz.plot_cost_breakdown({"a": 1}, {"a": 1}, fig=plt.gca())


# --- redrawing in place (the widgets pass the last figure back) ---------------------------------------------------


REDRAWS = {
    "plot_patches_to_tokens": lambda fig: viz.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, torch.randn(4, 3),
                                                                     fig=fig),
    "plot_token_assembly": lambda fig: viz.plot_token_assembly(2, 3, torch.randn(5, 2), fig=fig),
    "plot_attention_on_image": lambda fig: viz.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(5, 5), 2,
                                                                       3, fig=fig),
    "plot_cost_breakdown": lambda fig: viz.plot_cost_breakdown({"a": 1, "b": 2}, {"a": 3}, fig=fig),
}


@pytest.mark.parametrize("name", sorted(REDRAWS))
def test_a_redraw_reuses_the_figure_and_replaces_what_was_drawn(name):
    first = draw(REDRAWS[name], None)
    contents = [(len(ax.images), len(ax.lines), len(ax.collections), len(ax.patches), len(ax.texts))
                for ax in first.axes]
    axes = list(first.axes)
    again = draw(REDRAWS[name], first)
    assert again is first and list(again.axes) == axes
    assert [(len(ax.images), len(ax.lines), len(ax.collections), len(ax.patches), len(ax.texts))
            for ax in again.axes] == contents
    assert plt.get_fignums() == [first.number]


# --- plot_training_curves ----------------------------------------------------------------------------------------


def test_training_curves_draw_loss_and_accuracy_of_train_and_test_with_baselines():
    history = History(epoch=[1, 2, 3], train_loss=[2.0, 1.0, 0.5], train_accuracy=[0.3, 0.6, 0.9],
                      test_loss=[2.1, 1.2, 0.7], test_accuracy=[0.25, 0.55, 0.85])
    fig = draw(viz.plot_training_curves, history, baselines={"SVC": 0.98, "kNN": 0.96}, title="digits")
    loss_ax, accuracy_ax = fig.axes
    train_loss, test_loss = loss_ax.lines
    assert list(train_loss.get_xdata()) == [1, 2, 3] and list(train_loss.get_ydata()) == [2.0, 1.0, 0.5]
    assert list(test_loss.get_ydata()) == [2.1, 1.2, 0.7]
    train_accuracy, test_accuracy, svc, knn = accuracy_ax.lines
    assert list(train_accuracy.get_ydata()) == pytest.approx([30, 60, 90])
    assert list(test_accuracy.get_ydata()) == pytest.approx([25, 55, 85])
    assert list(svc.get_ydata()) == pytest.approx([98, 98]) and list(knn.get_ydata()) == pytest.approx([96, 96])
    assert tick_texts(accuracy_ax.get_legend().get_texts())[-2:] == ["SVC 98.0%", "kNN 96.0%"]
    assert (loss_ax.get_ylabel(), accuracy_ax.get_ylabel()) == ("cross-entropy", "accuracy (%)")
    assert accuracy_ax.get_ylim()[1] == 100.5
    assert fig.get_suptitle() == "digits"


def test_training_curves_without_a_test_set_draw_the_training_run_only():
    history = History(epoch=[1, 2], train_loss=[1.0, 0.5], train_accuracy=[0.5, 0.7])
    fig = draw(viz.plot_training_curves, history)
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    assert fig.get_suptitle() == ""


@pytest.mark.parametrize("history", [{"epoch": [1], "train_loss": [1.0], "train_accuracy": [0.5]}, None, [1.0]])
def test_training_curves_reject_anything_but_a_history(history):
    with pytest.raises(TypeError, match="history must be a vitsteps.train.History"):
        viz.plot_training_curves(history)


def test_training_curves_reject_an_empty_history():
    with pytest.raises(ValueError, match="history is empty"):
        viz.plot_training_curves(History())


def test_training_curves_reject_baselines_that_are_not_a_dict():
    history = History(epoch=[1], train_loss=[1.0], train_accuracy=[0.5])
    with pytest.raises(TypeError, match="baselines must be a dict"):
        viz.plot_training_curves(history, baselines=[("SVC", 0.98)])


# --- plot_confusion_matrix ---------------------------------------------------------------------------------------


def test_confusion_matrix_writes_the_counts_and_states_the_accuracy():
    matrix = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # true rows, predicted columns
    fig = draw(viz.plot_confusion_matrix, matrix, class_names=["cat", "dog", "eel"])
    ax = fig.axes[0]
    np.testing.assert_allclose(drawn(ax.images[0]), np.log1p(matrix.numpy()))
    written = {(text.get_position(), text.get_text()): text.get_color() for text in ax.texts}
    assert written == {((0, 0), "3"): "white", ((1, 0), "1"): "tab:red", ((1, 1), "2"): "white"}  # no zeros
    assert tick_texts(ax.get_xticklabels()) == ["cat", "dog", "eel"] == tick_texts(ax.get_yticklabels())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert ax.get_title().startswith("5 of 6 right (83.3%)")


def test_confusion_matrix_names_classes_by_index_by_default():
    fig = draw(viz.plot_confusion_matrix, torch.eye(2), title="perfect")
    assert tick_texts(fig.axes[0].get_xticklabels()) == ["0", "1"]
    assert fig.axes[0].get_title() == "perfect"


@pytest.mark.parametrize("matrix", [torch.zeros(2, 3), torch.zeros(4), torch.zeros(2, 2, 2), [[1, 0], [0, 1]]])
def test_confusion_matrix_rejects_anything_but_a_square_tensor(matrix):
    with pytest.raises((TypeError, ValueError), match=r"matrix must be a square \[K, K\] tensor"):
        viz.plot_confusion_matrix(matrix)


def test_confusion_matrix_rejects_the_wrong_number_of_class_names():
    with pytest.raises(ValueError, match="class_names has 3 names but the matrix has K=2 classes"):
        viz.plot_confusion_matrix(torch.eye(2), class_names=["a", "b", "c"])


# --- plot_misclassified ------------------------------------------------------------------------------------------


def test_misclassified_shows_only_the_wrong_images_titled_true_to_predicted():
    images = torch.rand(5, 1, 4, 4)  # [n, C, H, W]
    labels = torch.tensor([0, 1, 2, 3, 4])
    predictions = torch.tensor([0, 2, 2, 0, 4])
    fig = draw(viz.plot_misclassified, images, labels, predictions)
    assert len(fig.axes) == 2  # grid_shape(2) = 1x2
    assert [ax.get_title() for ax in fig.axes] == ["1 -> 2", "3 -> 0"]
    np.testing.assert_allclose(drawn(fig.axes[0].images[0]), scaled(images[1, 0]))
    np.testing.assert_allclose(drawn(fig.axes[1].images[0]), scaled(images[3, 0]))
    assert fig.get_suptitle() == "2 of 5 wrong (true -> predicted)"


def test_misclassified_shows_at_most_max_images_and_says_so():
    fig = draw(viz.plot_misclassified, torch.rand(4, 1, 4, 4), torch.zeros(4).long(), torch.ones(4).long(),
               max_images=3)
    assert [ax.get_title() for ax in fig.axes] == ["0 -> 1"] * 3 + [""]  # grid_shape(3) = 2x2
    assert fig.get_suptitle().endswith(", first 3 shown")


def test_misclassified_with_no_mistakes_says_so():
    fig = draw(viz.plot_misclassified, torch.rand(3, 1, 4, 4), torch.arange(3), torch.arange(3))
    (ax,) = fig.axes
    assert not ax.images and [text.get_text() for text in ax.texts] == ["no mistakes"]
    assert fig.get_suptitle().startswith("0 of 3 wrong")


@pytest.mark.parametrize("keyword", ["labels", "predictions"])
@pytest.mark.parametrize("value", [torch.zeros(3).long(), torch.zeros(4, 1).long(), [0, 0, 0, 0]])
def test_misclassified_rejects_classes_that_are_not_one_per_image(keyword, value):
    arguments = {"images": torch.rand(4, 1, 4, 4), "labels": torch.zeros(4).long(),
                 "predictions": torch.zeros(4).long(), keyword: value}
    with pytest.raises((TypeError, ValueError), match=f"{keyword} must be a \\[n\\] tensor with n=4"):
        viz.plot_misclassified(**arguments)


@pytest.mark.parametrize("max_images, error", [(0, ValueError), (1.5, TypeError)])
def test_misclassified_rejects_a_max_images_that_is_not_a_positive_int(max_images, error):
    with pytest.raises(error, match="max_images"):
        viz.plot_misclassified(torch.rand(2, 1, 4, 4), torch.zeros(2).long(), torch.ones(2).long(),
                               max_images=max_images)


def test_misclassified_rejects_a_single_image():
    with pytest.raises(ValueError, match="images must be a tensor with 4 dimensions"):
        viz.plot_misclassified(torch.rand(1, 4, 4), torch.zeros(1).long(), torch.ones(1).long())


# --- plot_cls_attention_grid -------------------------------------------------------------------------------------


def test_cls_attention_grid_has_a_row_per_layer_and_the_image_then_a_map_per_head():
    image = torch.rand(1, 1, 8, 8)  # [1, C, H, W]
    cls_maps = torch.rand(2, 2, 4, 4)  # [depth, h, rows, cols]
    fig = draw(viz.plot_cls_attention_grid, image, cls_maps, title="CLS")
    assert len(fig.axes) == 2 * (2 + 1)
    rows = [fig.axes[layer * 3:(layer + 1) * 3] for layer in range(2)]
    for layer, axes in enumerate(rows):
        assert axes[0].get_ylabel() == f"layer {layer}"
        np.testing.assert_allclose(drawn(axes[0].images[0]), scaled(image[0, 0]))
        for head in range(2):
            overlay = axes[head + 1].images[1]
            np.testing.assert_array_equal(drawn(overlay), cls_maps[layer, head].numpy())
            assert overlay.get_extent() == [-0.5, 7.5, 7.5, -0.5]  # stretched over the whole image
    assert [ax.get_title() for ax in rows[0]] == ["image", "head 0", "head 1"]
    assert fig.get_suptitle() == "CLS"


def test_cls_attention_grid_rejects_a_grid_that_does_not_tile_the_image():
    with pytest.raises(ValueError, match="cls_maps has a 3x3 grid that does not tile the 8x8 image"):
        viz.plot_cls_attention_grid(torch.rand(1, 8, 8), torch.rand(2, 2, 3, 3))


def test_cls_attention_grid_rejects_maps_without_the_layer_dimension():
    with pytest.raises(ValueError, match="cls_maps must be a tensor with 4 dimensions"):
        viz.plot_cls_attention_grid(torch.rand(1, 8, 8), torch.rand(2, 4, 4))


def test_cls_attention_grid_rejects_maps_given_as_a_list():
    with pytest.raises(TypeError, match="cls_maps must be a torch.Tensor"):
        viz.plot_cls_attention_grid(torch.rand(1, 8, 8), [[[[1.0]]]])


# --- plot_rollout ------------------------------------------------------------------------------------------------


def test_rollout_puts_each_image_above_its_overlay_with_its_caption():
    images = torch.rand(3, 1, 4, 4)  # [B, C, H, W]
    rollout_maps = torch.rand(3, 2, 2)  # [B, rows, cols]
    fig = draw(viz.plot_rollout, images, rollout_maps, labels=["a", "b", "c"])
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert len(fig.axes) == 2 * 3
    for index in range(3):
        np.testing.assert_allclose(drawn(top[index].images[0]), scaled(images[index, 0]))
        np.testing.assert_allclose(drawn(bottom[index].images[0]), scaled(images[index, 0]))
        np.testing.assert_array_equal(drawn(bottom[index].images[1]), rollout_maps[index].numpy())
    assert [ax.get_title() for ax in top] == ["a", "b", "c"]
    assert (top[0].get_ylabel(), bottom[0].get_ylabel()) == ("image", "rollout")


def test_rollout_without_labels_has_no_captions():
    fig = draw(viz.plot_rollout, torch.rand(1, 3, 4, 4), torch.rand(1, 2, 2), title="one")
    assert fig.axes[0].get_title() == ""
    assert drawn(fig.axes[0].images[0]).shape == (4, 4, 3)
    assert fig.get_suptitle() == "one"


def test_rollout_rejects_a_map_count_that_differs_from_the_images():
    with pytest.raises(ValueError, match="images has 3 images but rollout_maps has 2 maps"):
        viz.plot_rollout(torch.rand(3, 1, 8, 8), torch.rand(2, 4, 4))


def test_rollout_rejects_the_wrong_number_of_labels():
    with pytest.raises(ValueError, match="labels has 2 captions for 3 images"):
        viz.plot_rollout(torch.rand(3, 1, 8, 8), torch.rand(3, 4, 4), labels=["a", "b"])


def test_rollout_rejects_a_single_image():
    with pytest.raises(ValueError, match="images must be a tensor with 4 dimensions"):
        viz.plot_rollout(torch.rand(1, 8, 8), torch.rand(1, 4, 4))


def test_rollout_rejects_a_map_without_the_batch_dimension():
    with pytest.raises(ValueError, match="rollout_maps must be a tensor with 3 dimensions"):
        viz.plot_rollout(torch.rand(1, 1, 8, 8), torch.rand(4, 4))


# --- plot_attention_distance -------------------------------------------------------------------------------------


def test_attention_distance_draws_every_head_per_layer_their_mean_and_the_largest_distance():
    distances = torch.rand(3, 2) * 5  # [depth, h]
    fig = draw(viz.plot_attention_distance, distances, image_size=8)
    (ax,) = fig.axes
    assert len(ax.collections) == 2
    for head, points in enumerate(ax.collections):
        np.testing.assert_allclose(points.get_offsets(), np.stack([np.arange(3), distances[:, head].numpy()], 1),
                                   rtol=1e-6)
    mean, corner = ax.lines
    np.testing.assert_allclose(mean.get_ydata(), distances.mean(dim=1).numpy(), rtol=1e-6)
    assert list(corner.get_ydata()) == pytest.approx([7 * 2 ** 0.5] * 2)
    assert tick_texts(ax.get_legend().get_texts()) == ["head 0", "head 1", "mean of heads", "corner to corner"]
    assert tick_texts(ax.get_xticklabels()) == ["0", "1", "2"]
    assert ax.get_ylim()[0] == 0


def test_attention_distance_without_an_image_size_draws_no_limit():
    fig = draw(viz.plot_attention_distance, torch.rand(2, 1), title="far")
    assert len(fig.axes[0].lines) == 1
    assert fig.axes[0].get_title() == "far"


@pytest.mark.parametrize("image_size, error", [(0, ValueError), (8.0, TypeError)])
def test_attention_distance_rejects_an_image_size_that_is_not_a_positive_int(image_size, error):
    with pytest.raises(error, match="image_size"):
        viz.plot_attention_distance(torch.rand(2, 2), image_size=image_size)


def test_attention_distance_rejects_distances_of_one_layer_as_a_vector():
    with pytest.raises(ValueError, match="distances must be a tensor with 2 dimensions"):
        viz.plot_attention_distance(torch.rand(4))


def test_attention_distance_rejects_a_list():
    with pytest.raises(TypeError, match="distances must be a torch.Tensor"):
        viz.plot_attention_distance([[1.0, 2.0]])


# --- plot_filter_components --------------------------------------------------------------------------------------


def test_filter_components_draw_one_captioned_panel_per_component_on_one_symmetric_scale():
    components = torch.randn(5, 1, 2, 2)  # [K, C, P, P]
    share = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    fig = draw(viz.plot_filter_components, components, share)
    panels = fig.axes[:-1]
    assert len(panels) == 2 * 3 and not fig.axes[-1].images  # grid_shape(5) = 2x3, and a colour bar
    limit = float(components.abs().max())
    for index in range(5):
        image = panels[index].images[0]
        np.testing.assert_array_equal(drawn(image), components[index, 0].numpy())
        assert image.get_clim() == pytest.approx((-limit, limit))
    assert [ax.get_title() for ax in panels] == ["PC 0 (40%)", "PC 1 (30%)", "PC 2 (15%)", "PC 3 (10%)",
                                                 "PC 4 (5%)", ""]
    assert not panels[5].images


def test_filter_components_without_shares_are_captioned_by_index():
    fig = draw(viz.plot_filter_components, torch.randn(2, 3, 2, 2), title="two")
    assert [ax.get_title() for ax in fig.axes[:-1]] == ["PC 0", "PC 1"]
    assert fig.get_suptitle() == "two"


@pytest.mark.parametrize("share", [torch.rand(3), torch.rand(4, 1), [0.25] * 4])
def test_filter_components_reject_shares_that_are_not_one_per_component(share):
    with pytest.raises((TypeError, ValueError), match=r"share must be a \[K\] tensor with K=4"):
        viz.plot_filter_components(torch.rand(4, 1, 2, 2), share)


def test_filter_components_reject_a_single_component():
    with pytest.raises(ValueError, match="components must be a tensor with 4 dimensions"):
        viz.plot_filter_components(torch.rand(1, 2, 2))


def test_filter_components_reject_a_list():
    with pytest.raises(TypeError, match="components must be a torch.Tensor"):
        viz.plot_filter_components([[[[1.0]]]])


# --- plot_image_grid ---------------------------------------------------------------------------------------------


def test_image_grid_puts_per_row_captioned_images_to_a_row_and_leaves_spare_panels_blank():
    images = torch.rand(5, 1, 4, 4)  # [n, C, H, W]
    fig = draw(viz.plot_image_grid, images, titles=[0, 1, 2, 3, 4], title="digits", per_row=3)
    assert len(fig.axes) == 2 * 3
    for index in range(5):
        np.testing.assert_allclose(drawn(fig.axes[index].images[0]), scaled(images[index, 0]))
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2", "3", "4", ""]
    assert not fig.axes[5].images and not any(ax.axison for ax in fig.axes)
    assert fig.get_suptitle() == "digits"


def test_image_grid_without_captions_fits_a_short_row():
    images = torch.rand(2, 3, 4, 4)
    fig = draw(viz.plot_image_grid, images)
    assert len(fig.axes) == 2  # min(per_row, n) columns
    np.testing.assert_allclose(drawn(fig.axes[1].images[0]), scaled(images[1]).transpose(1, 2, 0), rtol=1e-6)
    assert [ax.get_title() for ax in fig.axes] == ["", ""]
    assert fig.get_suptitle() == ""


def test_image_grid_rejects_no_images():
    with pytest.raises(ValueError, match="images is empty"):
        viz.plot_image_grid(torch.rand(0, 1, 4, 4))


def test_image_grid_rejects_the_wrong_number_of_captions():
    with pytest.raises(ValueError, match="titles has 2 captions for 3 images"):
        viz.plot_image_grid(torch.rand(3, 1, 4, 4), titles=["a", "b"])


@pytest.mark.parametrize("per_row, error", [(0, ValueError), (2.5, TypeError)])
def test_image_grid_rejects_a_per_row_that_is_not_a_positive_int(per_row, error):
    with pytest.raises(error, match="per_row"):
        viz.plot_image_grid(torch.rand(3, 1, 4, 4), per_row=per_row)


def test_image_grid_rejects_a_single_image():
    with pytest.raises(ValueError, match="images must be a tensor with 4 dimensions"):
        viz.plot_image_grid(torch.rand(1, 4, 4))


def test_image_grid_rejects_a_list():
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        viz.plot_image_grid([torch.rand(1, 4, 4)])


# --- plot_learning_rate ------------------------------------------------------------------------------------------


def test_learning_rate_draws_every_step_against_epochs_with_the_warm_up_shaded():
    learning_rates = [0.025, 0.05, 0.075, 0.1, 0.075, 0.025]  # peak at step 4 of 6, 2 steps per epoch
    fig = draw(viz.plot_learning_rate, learning_rates, 2)
    (ax,) = fig.axes
    (schedule,) = ax.lines
    assert list(schedule.get_xdata()) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert list(schedule.get_ydata()) == learning_rates
    (warm_up,) = ax.patches
    assert (warm_up.get_x(), warm_up.get_width()) == (0, 2.0)
    assert tick_texts(ax.get_legend().get_texts()) == ["warm-up"]
    assert ax.get_xlim() == (0, 3.0)
    assert ax.get_ylim() == pytest.approx((0, 0.108))
    assert ax.get_title() == "peak 0.1 after 2 epochs, then a cosine down to 0"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "learning rate")


def test_learning_rate_takes_a_tuple_and_a_title():
    fig = draw(viz.plot_learning_rate, (1.0, 0.5), 1, title="schedule")
    assert fig.axes[0].get_title() == "schedule"


@pytest.mark.parametrize("learning_rates", [[], np.ones(3), torch.ones(3), 0.1])
def test_learning_rate_rejects_anything_but_a_non_empty_list(learning_rates):
    with pytest.raises(TypeError, match="learning_rates must be a non-empty list"):
        viz.plot_learning_rate(learning_rates, 1)


@pytest.mark.parametrize("steps_per_epoch, error", [(0, ValueError), (2.5, TypeError)])
def test_learning_rate_rejects_a_steps_per_epoch_that_is_not_a_positive_int(steps_per_epoch, error):
    with pytest.raises(error, match="steps_per_epoch"):
        viz.plot_learning_rate([0.1, 0.2], steps_per_epoch)


# --- bad inputs that each figure rejects ---------------------------------------------------------------------


def assert_rejected(call: Callable[[], object], error: type[Exception], words: str) -> None:
    """`call` raises `error` naming `words`, with no warning on the way; any other outcome fails with a one-line
    report (no traceback: pytest would parse this file again to print one, for every expected failure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            call()
        except error as raised:
            if re.search(words, str(raised)):
                return
            outcome: object = raised
        except Exception as raised:  # noqa: BLE001 - any other outcome is the finding
            outcome = raised
        else:
            outcome = "no error"
    pytest.fail(f"expected {error.__name__} naming {words!r}, got {outcome!r}", pytrace=False)


BAD_INPUTS = {
    "image_given_as_an_array_to_plot_patch_grid":
        (lambda: viz.plot_patch_grid(np.zeros((1, 4, 4), np.float32), 2), TypeError, "image must be a torch.Tensor"),
    "image_given_as_an_array_to_plot_cls_attention_grid":
        (lambda: viz.plot_cls_attention_grid(np.zeros((1, 4, 4), np.float32), torch.rand(1, 1, 2, 2)), TypeError,
         "image must be a torch.Tensor"),
    "batch_of_several_images_to_plot_patch_grid":
        (lambda: viz.plot_patch_grid(torch.rand(2, 1, 4, 4), 2), ValueError, "image"),
    "two_channel_image_to_plot_patch_grid":
        (lambda: viz.plot_patch_grid(torch.rand(2, 4, 4), 2), ValueError, "image"),
    "patches_given_as_a_list_to_plot_patch_sequence":
        (lambda: viz.plot_patch_sequence([[0.0, 1.0, 2.0, 3.0]], 2), TypeError, "patches must be a torch.Tensor"),
    "patch_size_given_as_text_to_plot_patch_sequence":
        (lambda: viz.plot_patch_sequence(torch.rand(4, 4), "2"), TypeError, "patch_size"),
    "two_channel_patches_to_plot_patch_sequence":
        (lambda: viz.plot_patch_sequence(torch.rand(4, 8), 2, in_chans=2), ValueError, "in_chans"),
    "only_a_total_to_plot_parameter_breakdown":
        (lambda: viz.plot_parameter_breakdown({"total": 5}), ValueError, "parts"),
    "label_given_as_text_to_plot_class_scores":
        (lambda: viz.plot_class_scores(torch.randn(3), label="a"), TypeError, "label"),
    "fractional_label_to_plot_class_scores":
        (lambda: viz.plot_class_scores(torch.randn(3), label=1.5), TypeError, "label"),
    "negative_count_to_plot_confusion_matrix":
        (lambda: viz.plot_confusion_matrix(torch.tensor([[1, -1], [0, 2]])), ValueError, "matrix"),
    "two_channel_images_to_plot_image_grid":
        (lambda: viz.plot_image_grid(torch.rand(2, 2, 4, 4)), ValueError, "image"),
    "rates_given_as_text_to_plot_learning_rate":
        (lambda: viz.plot_learning_rate(["0.1"], 1), ValueError, "learning_rates"),
    "nested_rates_to_plot_learning_rate":
        (lambda: viz.plot_learning_rate([[0.1, 0.2]], 1), ValueError, "learning_rates"),
    "all_zero_rates_to_plot_learning_rate":
        (lambda: viz.plot_learning_rate([0.0, 0.0], 1), ValueError, "learning_rates"),
    "nan_rate_to_plot_learning_rate":
        (lambda: viz.plot_learning_rate([float("nan"), 0.1], 1), ValueError, "learning_rates"),
    "baseline_given_as_text_to_plot_training_curves":
        (lambda: viz.plot_training_curves(History(epoch=[1], train_loss=[1.0], train_accuracy=[0.5]),
                                          baselines={"SVC": "0.98"}), ValueError, "baselines"),
    "rollout_grid_that_does_not_tile_the_images_to_plot_rollout":
        (lambda: viz.plot_rollout(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 3)), ValueError, "rollout_maps"),
    "history_whose_lists_differ_in_length_to_plot_training_curves":
        (lambda: viz.plot_training_curves(History(epoch=[1, 2], train_loss=[1.0], train_accuracy=[0.5, 0.6])),
         ValueError, "history"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_a_figure_rejects_a_bad_input(case):
    assert_rejected(*BAD_INPUTS[case])


def test_patch_sequence_emits_no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        viz.plot_patch_sequence(torch.rand(4, 4), 2)
    if caught:
        pytest.fail(f"{len(caught)} warnings, the first: {str(caught[0].message)[:80]}", pytrace=False)


def test_attention_distance_leaves_no_figure_open_when_it_rejects_the_image_size():
    with pytest.raises(ValueError, match="image_size"):
        viz.plot_attention_distance(torch.rand(2, 2), image_size=0)
    if plt.get_fignums():
        pytest.fail(f"{len(plt.get_fignums())} figure left open", pytrace=False)


# --- coverage ----------------------------------------------------------------------------------------------------


def test_every_public_function_of_viz_is_tested_here():
    public = {name for name, value in inspect.getmembers(viz, inspect.isfunction)
              if value.__module__ == viz.__name__ and not name.startswith("_")}
    called = set(re.findall(r"viz\.(\w+)\(", Path(__file__).read_text()))
    assert public - called == set(), "add a behaviour test and bad-input tests for these figures"
