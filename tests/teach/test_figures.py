"""vitsteps.teach.figures: every figure draws what it is given, without warnings, and names the parameter it rejects.

Pictures are checked through what the axes hold: the arrays handed to `imshow`, bar sizes, line data, titles
and tick labels, so a figure that shows the wrong numbers fails even though it still "draws".
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import assert_all_refused, assert_readable, draw, drawn, refusal_cases  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vitsteps.model import get_config, parameter_formula, vit_flops  # noqa: E402
from vitsteps.patches import image_to_patches  # noqa: E402
from vitsteps.teach import figures  # noqa: E402
from vitsteps.teach.figures import _draw  # noqa: E402
from vitsteps.train import History  # noqa: E402


def scaled(values: torch.Tensor) -> np.ndarray:
    """`values` mapped linearly onto [0, 1], as the figures show pictures."""
    values = values.detach().float()
    return ((values - values.min()) / (values.max() - values.min())).numpy()


def tick_texts(labels: list[matplotlib.text.Text]) -> list[str]:
    return [label.get_text() for label in labels]


def softmax_rows(*shape: int) -> torch.Tensor:
    """Random attention weights: every row sums to 1."""
    return torch.randn(*shape).softmax(dim=-1)


def test_grid_shape_is_the_smallest_near_square_grid_holding_every_panel():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shapes = {count: figures.grid_shape(count) for count in range(1, 40)}
    for count, (rows, cols) in shapes.items():
        assert rows * cols >= count, count
        assert (rows - 1) * cols < count, f"{count} panels leave a whole row empty in {rows}x{cols}"
        assert 0 <= cols - rows <= 1, f"{count} panels in {rows}x{cols} is not near square"


def test_patch_grid_draws_the_image_its_grid_lines_and_the_patch_numbers_beside_it():
    image = torch.arange(32.0).reshape(1, 4, 8)  # [C, H, W]
    fig = draw(figures.plot_patch_grid, image, 2)
    picture, order = fig.axes
    np.testing.assert_allclose(drawn(picture.images[0]), scaled(image[0]))
    assert picture.images[0].get_cmap().name == "gray_r"  # the series' grey scale: ink dark on white
    for ax in (picture, order):
        vertical, horizontal = (collection.get_segments() for collection in ax.collections)
        assert [segment[0][0] for segment in vertical] == [-0.5, 1.5, 3.5, 5.5, 7.5]  # W/P + 1 edges
        assert [segment[0][1] for segment in horizontal] == [-0.5, 1.5, 3.5]  # H/P + 1 edges
    assert not picture.texts, "no number covers a pixel of the image"
    assert [text.get_text() for text in order.texts] == [str(n) for n in range(8)]
    assert [text.get_position() for text in order.texts[:2]] == [(0.5, 0.5), (2.5, 0.5)]  # centred in its cell
    assert fig.get_suptitle() == "4x8 image, 2x4 patches of 2x2"


def test_patch_grid_draws_a_batch_of_one_rgb_image_in_colour_under_the_given_title():
    image = torch.rand(1, 3, 4, 4)  # [1, C, H, W]
    fig = draw(figures.plot_patch_grid, image, 4, title="one patch")
    picture, order = fig.axes
    np.testing.assert_allclose(drawn(picture.images[0]), scaled(image[0]).transpose(1, 2, 0), rtol=1e-6)
    assert [text.get_text() for text in order.texts] == ["0"]
    assert fig.get_suptitle() == "one patch"


def test_token_sources_draw_bands_for_a_reshape_and_squares_for_real_patches():
    image = torch.rand(1, 1, 8, 8)  # [B, C, H, W]
    bands = draw(figures.plot_token_sources, image, lambda picture: picture.reshape(1, 4, 16), title="bands")
    squares = draw(figures.plot_token_sources, image, lambda picture: image_to_patches(picture, 4))
    for fig, owner in ((bands, np.repeat(np.arange(4), 2)[:, None].repeat(8, 1)),  # rows 2n, 2n+1: token n
                       (squares, np.kron(np.arange(4).reshape(2, 2), np.ones((4, 4))))):
        picture, key = fig.axes
        np.testing.assert_allclose(drawn(picture.images[0]), scaled(image[0, 0]))
        tint = drawn(picture.images[1])  # [H, W, 4]
        colours = drawn(key.images[0])[:, 0, :3]  # [N, 3], the key's colour per token
        for n in range(4):
            assert np.allclose(tint[owner == n, :3], colours[n]), n
        assert tick_texts(key.get_yticklabels()) == [f"token {n}" for n in range(4)]
    assert bands.get_suptitle() == "bands" and squares.get_suptitle() == "4 tokens: which pixels each one holds"


def test_token_sources_draw_each_channel_of_a_colour_image_with_its_own_bands():
    image = torch.rand(1, 3, 8, 8)  # [B, C, H, W]
    fig = draw(figures.plot_token_sources, image, lambda picture: picture.reshape(1, 4, 48))
    *channels, key = fig.axes
    assert [ax.get_title() for ax in channels] == ["red", "green", "blue"]
    colours = drawn(key.images[0])[:, 0, :3]  # [N, 3]
    for c, ax in enumerate(channels):
        np.testing.assert_allclose(drawn(ax.images[0]), scaled(image[0, c]), rtol=1e-6)
        tint = drawn(ax.images[1])[..., :3]  # [H, W, 3]
        rows = (c * 64 + np.arange(64)).reshape(8, 8) // 48  # the token of each pixel: 48 values in memory order
        assert np.allclose(tint, colours[rows])


def test_patch_sequence_draws_one_titled_panel_per_patch_in_reading_order():
    image = torch.randn(1, 1, 4, 4)  # [B, C, H, W]
    patches = image_to_patches(image, 2)  # [1, N, C*P*P]
    with warnings.catch_warnings():  # test_patch_sequence_emits_no_warnings covers them
        warnings.simplefilter("ignore")
        fig = figures.plot_patch_sequence(patches, 2)
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
        fig = figures.plot_patch_sequence(patches, 2, in_chans=3, title="rgb")
    expected = scaled(patches).reshape(2, 3, 2, 2).transpose(0, 2, 3, 1)
    for index, ax in enumerate(fig.axes):
        np.testing.assert_allclose(drawn(ax.images[0]), expected[index], rtol=1e-6)
    assert fig.get_suptitle() == "rgb"


def test_matrix_draws_the_values_with_labels_a_colour_bar_and_the_numbers_written_in():
    matrix = torch.randn(2, 3)
    fig = draw(figures.plot_matrix, matrix, title="scores", xlabel="key", ylabel="query", cmap="magma")
    assert len(fig.axes) == 2  # heatmap and colour bar
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn(ax.images[0]), matrix.numpy())
    assert ax.images[0].get_cmap().name == "magma"
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("scores", "key", "query")
    assert sorted(text.get_text() for text in ax.texts) == sorted(f"{value:.2f}" for value in matrix.flatten().tolist())
    assert tick_texts(ax.get_xticklabels()) == ["0", "1", "2"] and tick_texts(ax.get_yticklabels()) == ["0", "1"]


def test_matrix_writes_black_on_pale_cells_and_white_on_dark_ones():
    matrix = torch.tensor([[0.0, 1.0]])  # the ends of magma: black, then pale yellow
    ax = draw(figures.plot_matrix, matrix, cmap="magma", row_labels=["query"], col_labels=["dark", "pale"]).axes[0]
    assert [(text.get_text(), text.get_color()) for text in ax.texts] == [("0.00", "white"), ("1.00", "black")]
    assert tick_texts(ax.get_xticklabels()) == ["dark", "pale"] and tick_texts(ax.get_yticklabels()) == ["query"]


@pytest.mark.parametrize("shape, annotate", [((5, 13), None), ((2, 2), False)])
def test_matrix_leaves_the_numbers_out_of_a_large_matrix_or_when_asked(shape, annotate):
    fig = draw(figures.plot_matrix, torch.rand(shape), annotate=annotate)
    assert not fig.axes[0].texts


def test_kernel_filters_draw_one_panel_per_dimension_and_channel_on_one_symmetric_scale():
    kernel = torch.randn(4, 3, 2, 2)  # [D, C, P, P]
    fig = draw(figures.plot_kernel_filters, kernel)
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
    fig = draw(figures.plot_kernel_filters, torch.randn(2, 2, 3, 3), title="two channels")
    assert [fig.axes[c * 2].get_ylabel() for c in range(2)] == ["c=0", "c=1"]
    assert fig.get_suptitle() == "two channels"


def test_token_sequence_stacks_the_batch_and_boxes_every_cls_row():
    tokens = torch.randn(2, 3, 4)  # [B, L, D]
    fig = draw(figures.plot_token_sequence, tokens)
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn(ax.images[0]), tokens.reshape(6, 4).numpy())
    assert tick_texts(ax.get_yticklabels()) == ["0: CLS", "0: patch 0", "0: patch 1",
                                                "1: CLS", "1: patch 0", "1: patch 1"]
    assert [patch.get_y() for patch in ax.patches] == [-0.5, 2.5]  # the CLS row of each sample
    assert [patch.get_height() for patch in ax.patches] == [1, 1]
    assert [line.get_ydata()[0] for line in ax.lines] == [2.5]  # one line between the two samples
    assert ax.get_title() == "tokens [B=2, L=3, D=4]"


def test_token_sequence_of_one_sequence_has_no_sample_prefix_and_no_separator():
    fig = draw(figures.plot_token_sequence, torch.randn(3, 2), num_prefix_tokens=2, title="two prefixes")
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == ["prefix 0", "prefix 1", "patch 0"]
    assert [patch.get_height() for patch in ax.patches] == [2]
    assert not ax.lines
    assert ax.get_title() == "two prefixes"


def test_token_sequence_without_prefix_boxes_nothing():
    fig = draw(figures.plot_token_sequence, torch.randn(1, 2, 2), num_prefix_tokens=0)
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == ["patch 0", "patch 1"]
    assert not ax.patches


def test_position_similarity_panel_r_c_is_the_cosine_of_patch_r_c_with_every_patch():
    rows, cols = 2, 3
    position_table = torch.randn(1 + rows * cols, 8)  # [1 + N, D], CLS row first
    fig = draw(figures.plot_position_similarity, position_table, (rows, cols))
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
    fig = draw(figures.plot_position_similarity, position_table, 2, num_prefix_tokens=0, title="no CLS")
    mosaic = drawn(fig.axes[0].images[0])
    unit_rows = torch.nn.functional.normalize(position_table[0], dim=1)
    np.testing.assert_allclose(mosaic[:2, :2], (unit_rows @ unit_rows[0]).reshape(2, 2).numpy(), atol=1e-6)
    assert fig.axes[0].get_title() == "no CLS"


def test_attention_heads_draw_one_labelled_map_per_head_on_one_scale():
    weights = softmax_rows(3, 4, 4)  # [h, L, L]
    fig = draw(figures.plot_attention_heads, weights)
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
    one_head = draw(figures.plot_attention_heads, softmax_rows(2, 2), token_labels=["a", "b"], title="one")
    assert len(one_head.axes) == 2 and one_head.axes[0].get_title() == "head 0"
    assert tick_texts(one_head.axes[0].get_xticklabels()) == ["a", "b"]
    assert one_head.get_suptitle() == "one"
    weights = softmax_rows(1, 2, 3, 3)  # [1, h, L, L]
    batched = draw(figures.plot_attention_heads, weights)
    np.testing.assert_array_equal(drawn(batched.axes[1].images[0]), weights[0, 1].numpy())


def test_attention_heads_leave_out_the_ticks_of_long_sequences():
    fig = draw(figures.plot_attention_heads, softmax_rows(1, 21, 21))
    assert len(fig.axes[0].get_xticks()) == 0


def test_parameter_breakdown_draws_a_labelled_bar_per_part_and_leaves_out_the_total():
    parts = {"embedding": 100, "blocks": 900, "head": 0, "total": 1000}
    fig = draw(figures.plot_parameter_breakdown, parts)
    ax = fig.axes[0]
    assert [bar.get_width() for bar in ax.patches] == [100, 900, 0]  # a bar's length is its share
    assert ax.get_xscale() == "linear"
    assert tick_texts(ax.get_yticklabels()) == ["embedding", "blocks", "head"]
    assert [text.get_text() for text in ax.texts] == ["100 (10.0%)", "900 (90.0%)", "0 (0.0%)"]
    assert ax.get_title() == "1,000 parameters by part"


def test_parameter_breakdown_of_a_real_config_without_its_total_sums_the_parts():
    formula = parameter_formula(get_config("toy"))
    parts = {name: count for name, count in formula.items() if name != "total"}
    fig = draw(figures.plot_parameter_breakdown, parts, title="toy")
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == list(parts)
    assert [bar.get_width() for bar in ax.patches] == list(parts.values())
    shares = [text.get_text().split(" (")[1] for text in ax.texts]
    assert shares == [f"{count / formula['total']:.1%})" for count in parts.values()]
    assert ax.get_title() == "toy"


@pytest.mark.parametrize("label", [2, torch.tensor(2)], ids=["int", "tensor"])
def test_class_scores_draw_the_logits_and_their_softmax_with_the_true_class_marked(label):
    logits = torch.randn(1, 4)  # [1, K]
    fig = draw(figures.plot_class_scores, logits, label=label)
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
    fig = draw(figures.plot_class_scores, torch.randn(3))
    assert all(bar.get_facecolor() == to_rgba("tab:blue") for bar in fig.axes[0].patches)
    assert fig.get_suptitle() == ""


def test_patch_mosaic_tiles_the_patches_in_reading_order_with_blank_gaps():
    patches = torch.randn(1, 5, 4)  # [1, N, C*P*P], P=2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mosaic = figures.patch_mosaic(patches, 2, per_row=3)
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
        mosaic = figures.patch_mosaic(patches, 4, in_chans=3)
    assert mosaic.shape == (4, 2 * 4 + 1, 3)  # gap of P // 4 = 1 pixel
    tiles = scaled(patches).reshape(2, 3, 4, 4).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(mosaic[:, :4], tiles[0], rtol=1e-6)
    np.testing.assert_allclose(mosaic[:, 5:], tiles[1], rtol=1e-6)
    assert (mosaic[:, 4] == 1.0).all()


def test_patch_mosaic_of_a_real_image_puts_the_pixels_back_in_place():
    image = torch.rand(1, 1, 4, 4)  # [B, C, H, W]
    mosaic = figures.patch_mosaic(image_to_patches(image, 2), 2, per_row=2)
    np.testing.assert_allclose(np.delete(np.delete(mosaic, 2, axis=0), 2, axis=1), scaled(image[0, 0]), rtol=1e-6)


def test_patches_to_tokens_shows_the_grid_the_sequence_and_the_tokens():
    image = torch.rand(1, 4, 8)  # [C, H, W]
    patch_tokens = torch.randn(1, 8, 5)  # [1, N, D]
    fig = draw(figures.plot_patches_to_tokens, image, 2, patch_tokens, title="three views")
    grid, sequence, tokens = fig.axes
    np.testing.assert_allclose(drawn(grid.images[0]), scaled(image[0]))
    vertical, horizontal = (collection.get_segments() for collection in grid.collections)
    assert [segment[0][0] for segment in vertical] == [-0.5, 1.5, 3.5, 5.5, 7.5]
    assert [segment[0][1] for segment in horizontal] == [-0.5, 1.5, 3.5]
    assert not grid.texts, "the sequence numbers the patches; nothing covers the image"
    expected_mosaic = figures.patch_mosaic(image_to_patches(image.unsqueeze(0), 2), 2, per_row=8)
    np.testing.assert_allclose(drawn(sequence.images[0]), expected_mosaic, rtol=1e-5, atol=1e-6)
    assert [text.get_text() for text in sequence.texts] == [str(n) for n in range(8)]
    assert "8 patches in reading order" in sequence.get_title()
    np.testing.assert_array_equal(drawn(tokens.images[0]), patch_tokens[0].numpy())
    assert tokens.get_title().startswith("patch tokens [N, D] = [8, 5]")
    assert fig.get_suptitle() == "three views"


def test_patches_to_tokens_without_tokens_has_two_panels_and_leaves_many_patches_unnumbered():
    fig = draw(figures.plot_patches_to_tokens, torch.rand(3, 18, 18), 2)  # 81 RGB patches
    grid, sequence = fig.axes
    assert drawn(grid.images[0]).shape == (18, 18, 3)
    assert not grid.texts and not sequence.texts
    assert "each 3x2x2 = 12 values" in sequence.get_title()


def test_token_assembly_puts_cls_first_in_every_sample_and_frames_the_rows_used():
    position_table = torch.randn(6, 3)  # [max_num_token, D]
    fig = draw(figures.plot_token_assembly, 2, 4, position_table)
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
    fig = draw(figures.plot_token_assembly, 1, 6, torch.randn(4, 2), title="too long")
    table = fig.axes[1]
    frame, missing = table.patches
    assert frame.get_height() == 4
    assert (missing.get_y(), missing.get_height()) == (3.5, 3)  # 7 tokens needed, 4 rows exist
    assert missing.get_edgecolor() == to_rgba("tab:red")
    assert "7 rows needed" in table.get_title() and "only 4 exist" in table.get_title()
    assert table.get_ylim() == (6.5, -0.5)
    assert fig.get_suptitle() == "too long"


def test_attention_on_image_frames_the_query_patch_and_lays_its_weights_over_the_grid():
    image = torch.rand(1, 4, 6)  # [C, H, W], 2x3 patches of 2
    weights = softmax_rows(7, 7)  # [L, L]
    fig = draw(figures.plot_attention_on_image, image, weights, 2, 5)  # token 5 = patch 4 = row 1, col 1
    grid, overlay, matrix = fig.axes
    np.testing.assert_allclose(drawn(grid.images[0]), scaled(image[0]))
    (query_frame,) = grid.patches
    assert query_frame.get_xy() == (1.5, 1.5) and query_frame.get_width() == 2
    assert grid.get_title().startswith("query: patch 4 (token 5)")
    heat = weights[5, 1:].reshape(2, 3).numpy()
    np.testing.assert_allclose(drawn(overlay.images[1]), heat)
    assert overlay.images[1].get_extent() == [-0.5, 5.5, 3.5, -0.5]  # one cell per patch, over the image
    assert overlay.images[1].get_clim() == (0, 1) and matrix.images[0].get_clim() == (0, 1)  # never stretched
    assert f"{heat.min():.3f} to {heat.max():.3f}" in overlay.get_title()
    assert f"CLS {float(weights[5, 0]):.3f}" in overlay.get_title()
    np.testing.assert_array_equal(drawn(matrix.images[0]), weights.numpy())
    (row_frame,) = matrix.patches
    assert (row_frame.get_y(), row_frame.get_height(), row_frame.get_width()) == (4.5, 1, 7)
    assert tick_texts(matrix.get_xticklabels())[0] == "CLS"


def test_attention_on_image_of_the_cls_query_frames_no_patch():
    weights = softmax_rows(5, 5)
    fig = draw(figures.plot_attention_on_image, torch.rand(1, 4, 4), weights, 2, 0, title="CLS")
    grid, overlay, matrix = fig.axes
    assert not grid.patches
    assert "the CLS token" in grid.get_title()
    np.testing.assert_allclose(drawn(overlay.images[1]), weights[0, 1:].reshape(2, 2).numpy())
    assert matrix.patches[0].get_y() == -0.5
    assert fig.get_suptitle() == "CLS"


def test_cost_breakdown_draws_parameters_and_flops_part_by_part_with_si_totals():
    parameters = {"embedding": 1_500, "blocks": 1_233_067, "total": 1_234_567}
    flops = {"embedding": 2_000, "blocks": 3_000_000_000, "head": 0}
    fig = draw(figures.plot_cost_breakdown, parameters, flops, title="costs")
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


REDRAWS = {
    "plot_patches_to_tokens": lambda fig: figures.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, torch.randn(4, 3),
                                                                     fig=fig),
    "plot_token_assembly": lambda fig: figures.plot_token_assembly(2, 3, torch.randn(5, 2), fig=fig),
    "plot_attention_on_image": lambda fig: figures.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(5, 5), 2,
                                                                       3, fig=fig),
    "plot_cost_breakdown": lambda fig: figures.plot_cost_breakdown({"a": 1, "b": 2}, {"a": 3}, fig=fig),
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


def test_training_curves_draw_loss_and_accuracy_of_train_and_test_with_baselines():
    history = History(epoch=[1, 2, 3], train_loss=[2.0, 1.0, 0.5], train_accuracy=[0.3, 0.6, 0.9],
                      val_loss=[2.1, 1.2, 0.7], val_accuracy=[0.25, 0.55, 0.85])
    fig = draw(figures.plot_training_curves, history, baselines={"SVC": 0.98, "kNN": 0.96}, title="digits")
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
    fig = draw(figures.plot_training_curves, history)
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    assert fig.get_suptitle() == ""


def test_confusion_matrix_writes_the_counts_and_states_the_accuracy():
    matrix = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # true rows, predicted columns
    fig = draw(figures.plot_confusion_matrix, matrix, class_names=["cat", "dog", "eel"])
    ax = fig.axes[0]
    np.testing.assert_allclose(drawn(ax.images[0]), np.log1p(matrix.numpy()))
    written = {(text.get_position(), text.get_text()): text.get_color() for text in ax.texts}
    assert written == {((0, 0), "3"): "white", ((1, 0), "1"): "tab:red", ((1, 1), "2"): "white"}  # no zeros
    assert tick_texts(ax.get_xticklabels()) == ["cat", "dog", "eel"] == tick_texts(ax.get_yticklabels())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert ax.get_title().startswith("5 of 6 right (83.3%)")


def test_confusion_matrix_names_classes_by_index_by_default():
    fig = draw(figures.plot_confusion_matrix, torch.eye(2), title="perfect")
    assert tick_texts(fig.axes[0].get_xticklabels()) == ["0", "1"]
    assert fig.axes[0].get_title() == "perfect"


def test_misclassified_shows_only_the_wrong_images_titled_true_to_predicted():
    images = torch.rand(5, 1, 4, 4)  # [n, C, H, W]
    labels = torch.tensor([0, 1, 2, 3, 4])
    predictions = torch.tensor([0, 2, 2, 0, 4])
    fig = draw(figures.plot_misclassified, images, labels, predictions)
    assert len(fig.axes) == 2  # grid_shape(2) = 1x2
    assert [ax.get_title() for ax in fig.axes] == ["1 -> 2", "3 -> 0"]
    np.testing.assert_allclose(drawn(fig.axes[0].images[0]), scaled(images[1, 0]))
    np.testing.assert_allclose(drawn(fig.axes[1].images[0]), scaled(images[3, 0]))
    assert fig.get_suptitle() == "2 of 5 wrong (true -> predicted)"


def test_misclassified_shows_at_most_max_images_and_says_so():
    fig = draw(figures.plot_misclassified, torch.rand(4, 1, 4, 4), torch.zeros(4).long(), torch.ones(4).long(),
               max_images=3)
    assert [ax.get_title() for ax in fig.axes] == ["0 -> 1"] * 3 + [""]  # grid_shape(3) = 2x2
    assert fig.get_suptitle().endswith(", first 3 shown")


def test_misclassified_with_no_mistakes_says_so():
    fig = draw(figures.plot_misclassified, torch.rand(3, 1, 4, 4), torch.arange(3), torch.arange(3))
    (ax,) = fig.axes
    assert not ax.images and [text.get_text() for text in ax.texts] == ["no mistakes"]
    assert fig.get_suptitle().startswith("0 of 3 wrong")


def test_image_grid_puts_per_row_captioned_images_to_a_row_and_leaves_spare_panels_blank():
    images = torch.rand(5, 1, 4, 4)  # [n, C, H, W]
    fig = draw(figures.plot_image_grid, images, titles=[0, 1, 2, 3, 4], title="digits", per_row=3)
    assert len(fig.axes) == 2 * 3
    for index in range(5):
        np.testing.assert_allclose(drawn(fig.axes[index].images[0]), scaled(images[index, 0]))
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2", "3", "4", ""]
    assert not fig.axes[5].images and not any(ax.axison for ax in fig.axes)
    assert fig.get_suptitle() == "digits"


def test_image_grid_without_captions_fits_a_short_row():
    images = torch.rand(2, 3, 4, 4)
    fig = draw(figures.plot_image_grid, images)
    assert len(fig.axes) == 2  # min(per_row, n) columns
    np.testing.assert_allclose(drawn(fig.axes[1].images[0]), scaled(images[1]).transpose(1, 2, 0), rtol=1e-6)
    assert [ax.get_title() for ax in fig.axes] == ["", ""]
    assert fig.get_suptitle() == ""


def test_learning_rate_draws_every_step_against_epochs_with_the_warm_up_shaded():
    learning_rates = [0.025, 0.05, 0.075, 0.1, 0.075, 0.025]  # peak at step 4 of 6, 2 steps per epoch
    fig = draw(figures.plot_learning_rate, learning_rates, 2)
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
    fig = draw(figures.plot_learning_rate, (1.0, 0.5), 1, title="schedule")
    assert fig.axes[0].get_title() == "schedule"


def test_the_patch_grid_is_drawn_the_same_way_in_every_figure_that_shows_it():
    image = torch.rand(1, 4, 4)
    grid = draw(figures.plot_patch_grid, image, 2).axes[0]
    explorer = draw(figures.plot_patches_to_tokens, image, 2).axes[0]
    attention = draw(figures.plot_attention_on_image, image, softmax_rows(5, 5), 2, 0).axes[0]
    lines = [[segment.tolist() for segment in c.get_segments()] for c in grid.collections]
    for ax in (explorer, attention):
        assert [[segment.tolist() for segment in c.get_segments()] for c in ax.collections[:2]] == lines


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

HISTORY = History(epoch=[1], train_loss=[1.0], train_accuracy=[0.5])
REFUSED = {
    "grid_shape: a count of 0": (lambda: figures.grid_shape(0), ValueError, r"count must be a positive int, got 0"),
    "screen_png: a file name instead of a figure":
        (lambda: _draw.screen_png("fig.png"), TypeError, r"fig must be a matplotlib Figure, got 'fig\.png'"),
    "png_size: bytes that are not a PNG":
        (lambda: _draw.png_size(b"GIF89a" + bytes(20)), ValueError,
         r"png must start with the PNG signature, got b'GIF89a"),
    "png_size: text":
        (lambda: _draw.png_size("image.png"), TypeError, r"png must be PNG bytes, got 'image.png'"),
    "plot_patch_grid: an image given as an array":
        (lambda: figures.plot_patch_grid(np.zeros((1, 4, 4), np.float32), 2), TypeError,
         r"image must be a torch\.Tensor shaped \[C, H, W\]"),
    "plot_patch_grid: a batch of several images":
        (lambda: figures.plot_patch_grid(torch.rand(2, 1, 4, 4), 2), ValueError,
         r"image must be one image \[C, H, W\] or \[1, C, H, W\], got shape \(2, 1, 4, 4\); pick one"),
    "plot_patch_grid: an image of two channels":
        (lambda: figures.plot_patch_grid(torch.rand(2, 4, 4), 2), ValueError,
         r"image must have 1 \(grayscale\) or 3 \(RGB\) channels, got 2; draw one channel"),
    "plot_patch_grid: integer pixels":
        (lambda: figures.plot_patch_grid(torch.zeros(1, 4, 4, dtype=torch.uint8), 2), TypeError,
         r"image must be a floating-point tensor"),
    "plot_patch_grid: a patch size of 0":
        (lambda: figures.plot_patch_grid(torch.rand(1, 4, 4), 0), ValueError, r"patch_size must be a positive int"),
    "plot_patch_grid: a patch size that does not divide the height":
        (lambda: figures.plot_patch_grid(torch.rand(1, 4, 8), 3), ValueError,
         r"patch_size=3 does not divide the image height 4"),
    "plot_patch_sequence: patches given as a list":
        (lambda: figures.plot_patch_sequence([[0.0, 1.0, 2.0, 3.0]], 2), TypeError, r"patches must be a torch\.Tensor"),
    "plot_patch_sequence: a single patch":
        (lambda: figures.plot_patch_sequence(torch.rand(4), 2), ValueError, r"patches must be a tensor with 2 dim"),
    "plot_patch_sequence: no patches":
        (lambda: figures.plot_patch_sequence(torch.rand(0, 4), 2), ValueError, r"patches is empty"),
    "plot_patch_sequence: patches cut with another patch size":
        (lambda: figures.plot_patch_sequence(torch.rand(4, 4), 3), ValueError,
         r"patches have 4 values each but in_chans\*patch_size\*\*2 = 9; pass the in_chans and patch_size"),
    "plot_patch_sequence: two channels":
        (lambda: figures.plot_patch_sequence(torch.rand(4, 8), 2, in_chans=2), ValueError,
         r"in_chans must be one of 1, 3, got 2"),
    "plot_patch_sequence: a patch size that is text":
        (lambda: figures.plot_patch_sequence(torch.rand(4, 4), "2"), TypeError, r"patch_size must be a positive int"),
    "plot_token_sources: a batch of two images":
        (lambda: figures.plot_token_sources(torch.rand(2, 1, 4, 4), lambda x: x.reshape(2, 4, 4)), ValueError,
         r"image must be one image \[1, C, H, W\], got shape \(2, 1, 4, 4\)"),
    "plot_token_sources: tokens instead of the function that cut them":
        (lambda: figures.plot_token_sources(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4)), TypeError,
         r"cut must be a function from images"),
    "plot_token_sources: a cut that drops the batch dimension":
        (lambda: figures.plot_token_sources(torch.rand(1, 1, 4, 4), lambda x: x.reshape(4, 4)), ValueError,
         r"cut must return tokens \[1, N, \.\.\.\]"),
    "plot_token_sources: an image of five channels":
        (lambda: figures.plot_token_sources(torch.rand(1, 5, 4, 4), lambda x: x.reshape(1, 4, 20)), ValueError,
         r"the image's channels C must be an int from 1 to 4, got 5"),
    "plot_matrix: a label per row missing":
        (lambda: figures.plot_matrix(torch.rand(3, 2), row_labels=["a", "b"]), ValueError,
         r"row_labels has 2 names but the matrix has 3; pass 3 names"),
    "patch_mosaic: a per_row of 0":
        (lambda: figures.patch_mosaic(torch.rand(4, 4), 2, per_row=0), ValueError, r"per_row must be a positive int"),
    "patch_mosaic: patches cut with another patch size":
        (lambda: figures.patch_mosaic(torch.rand(4, 12), 2), ValueError, r"patches have 12 values each"),
    "plot_matrix: a vector":
        (lambda: figures.plot_matrix(torch.rand(3)), ValueError, r"matrix must be a tensor with 2 dimensions"),
    "plot_matrix: a nested list":
        (lambda: figures.plot_matrix([[1.0, 2.0]]), TypeError, r"matrix must be a torch\.Tensor"),
    "plot_kernel_filters: a flat weight matrix":
        (lambda: figures.plot_kernel_filters(torch.randn(4, 12)), ValueError, r"kernel must be a tensor with 4 dim"),
    "plot_token_sequence: a single token":
        (lambda: figures.plot_token_sequence(torch.randn(4)), ValueError, r"tokens must be a tensor with 3 dim"),
    "plot_token_sequence: a negative prefix count":
        (lambda: figures.plot_token_sequence(torch.randn(3, 2), num_prefix_tokens=-1), ValueError,
         r"num_prefix_tokens must be an int >= 0, got -1; pass 1 for a CLS token"),
    "plot_token_sequence: more prefix tokens than tokens":
        (lambda: figures.plot_token_sequence(torch.randn(3, 2), num_prefix_tokens=4), ValueError,
         r"num_prefix_tokens=4 but the sequences have only L=3 tokens; pass at most 3"),
    "plot_position_similarity: a table made for another grid":
        (lambda: figures.plot_position_similarity(torch.randn(17, 8), 3), ValueError,
         r"grid_size=3 gives 9 patches \+ 1 CLS = 10 tokens, but the input has L=17"),
    "plot_position_similarity: a grid of three numbers":
        (lambda: figures.plot_position_similarity(torch.randn(5, 8), (2, 2, 2)), ValueError, r"grid_size must be an"),
    "plot_position_similarity: a single row":
        (lambda: figures.plot_position_similarity(torch.randn(8), 2), ValueError, r"position_table must be a tensor"),
    "plot_position_similarity: a negative prefix count":
        (lambda: figures.plot_position_similarity(torch.randn(5, 8), 2, num_prefix_tokens=-1), ValueError,
         r"num_prefix_tokens must be an int >= 0"),
    "plot_token_assembly: a batch size of 0":
        (lambda: figures.plot_token_assembly(0, 4, torch.randn(6, 3)), ValueError, r"batch_size must be a positive"),
    "plot_token_assembly: a patch count that is fractional":
        (lambda: figures.plot_token_assembly(2, 2.0, torch.randn(6, 3)), TypeError, r"num_patches must be a positive"),
    "plot_token_assembly: a batched position table":
        (lambda: figures.plot_token_assembly(2, 4, torch.randn(1, 6, 3)), ValueError,
         r"position_table must be a tensor with 2 dimensions"),
    "plot_token_assembly: a figure that is text":
        (lambda: figures.plot_token_assembly(2, 4, torch.randn(6, 3), fig="figure"), TypeError,
         r"fig must be a matplotlib Figure made by this function, or None, got 'figure'"),
    "plot_attention_heads: weights that are not square":
        (lambda: figures.plot_attention_heads(softmax_rows(2, 3, 4)), ValueError,
         r"weights must be square per head \[h, L, L\] \(self-attention\), got \(2, 3, 4\)"),
    "plot_attention_heads: a batch of several samples":
        (lambda: figures.plot_attention_heads(softmax_rows(2, 2, 3, 3)), ValueError,
         r"weights must be a tensor with 3 dimensions"),
    "plot_attention_heads: the wrong number of token labels":
        (lambda: figures.plot_attention_heads(softmax_rows(2, 3, 3), token_labels=["a", "b"]), ValueError,
         r"token_labels has 2 names but there are L=3 tokens; pass 3 names"),
    "plot_attention_on_image: weights for another number of patches":
        (lambda: figures.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(4, 4), 2, 0), ValueError,
         r"weights must be \[L, L\] with L = 1 \+ 4 patches"),
    "plot_attention_on_image: the weights of all heads":
        (lambda: figures.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(2, 5, 5), 2, 0), ValueError,
         r"weights must be a tensor with 2 dimensions"),
    "plot_attention_on_image: a query past the last token":
        (lambda: figures.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(5, 5), 2, 5), ValueError,
         r"query must be an int from 0 to 4, got 5; 0 is the CLS token"),
    "plot_attention_on_image: a patch size that does not divide":
        (lambda: figures.plot_attention_on_image(torch.rand(1, 4, 4), softmax_rows(5, 5), 3, 0), ValueError,
         r"patch_size=3 does not divide"),
    "plot_patches_to_tokens: tokens of another image":
        (lambda: figures.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, torch.randn(3, 5)), ValueError,
         r"patch_tokens has 3 rows but the image has N=4 patches"),
    "plot_patches_to_tokens: tokens given as a list":
        (lambda: figures.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, [[0.0] * 5] * 4), TypeError,
         r"patch_tokens must be a torch\.Tensor"),
    "plot_patches_to_tokens: a figure that is an axes":
        (lambda: figures.plot_patches_to_tokens(torch.rand(1, 4, 4), 2, fig=plt.gca()), TypeError,
         r"fig must be a matplotlib Figure"),
    "plot_parameter_breakdown: a list of pairs":
        (lambda: figures.plot_parameter_breakdown([("a", 1)]), TypeError, r"parts must be a non-empty dict"),
    "plot_parameter_breakdown: only a total":
        (lambda: figures.plot_parameter_breakdown({"total": 5}), ValueError,
         r"parts must be a dict with at least one part besides 'total'"),
    "plot_parameter_breakdown: a fractional count":
        (lambda: figures.plot_parameter_breakdown({"a": 2.5, "b": 1}), TypeError, r"parts\['a'\] must be an int"),
    "plot_class_scores: a batch of several samples":
        (lambda: figures.plot_class_scores(torch.randn(2, 3)), ValueError, r"logits must be a tensor with 1 dim"),
    "plot_class_scores: a label outside the classes":
        (lambda: figures.plot_class_scores(torch.randn(3), label=3), ValueError,
         r"label must be an int from 0 to 2, got 3; pass the true class"),
    "plot_class_scores: a fractional label":
        (lambda: figures.plot_class_scores(torch.randn(3), label=1.5), TypeError, r"label must be an int"),
    "plot_cost_breakdown: parameters that are empty":
        (lambda: figures.plot_cost_breakdown({}, {"a": 1}), TypeError, r"parameters must be a non-empty dict"),
    "plot_cost_breakdown: flops with only a total":
        (lambda: figures.plot_cost_breakdown({"a": 1}, {"total": 5}), ValueError,
         r"flops must be a dict with at least one part besides 'total'"),
    "plot_cost_breakdown: a negative count":
        (lambda: figures.plot_cost_breakdown({"a": 1}, {"a": -5}), ValueError, r"flops\['a'\] must be an int >= 0"),
    "plot_image_grid: no images":
        (lambda: figures.plot_image_grid(torch.rand(0, 1, 4, 4)), ValueError, r"images is empty"),
    "plot_image_grid: the wrong number of captions":
        (lambda: figures.plot_image_grid(torch.rand(3, 1, 4, 4), titles=["a", "b"]), ValueError,
         r"titles has 2 captions for 3 images; pass one caption per image"),
    "plot_image_grid: a per_row of 2.5":
        (lambda: figures.plot_image_grid(torch.rand(3, 1, 4, 4), per_row=2.5), TypeError, r"per_row must be a "),
    "plot_image_grid: two-channel images":
        (lambda: figures.plot_image_grid(torch.rand(2, 2, 4, 4)), ValueError, r"image must have 1 \(grayscale\)"),
    "plot_learning_rate: no rates":
        (lambda: figures.plot_learning_rate([], 1), TypeError, r"learning_rates must be a non-empty list"),
    "plot_learning_rate: a rate that is text":
        (lambda: figures.plot_learning_rate([0.1, "0.2"], 1), TypeError,
         r"learning_rates\[1\] must be a number >= 0, got '0\.2'"),
    "plot_learning_rate: a rate that is not a number":
        (lambda: figures.plot_learning_rate([float("nan"), 0.1], 1), ValueError, r"learning_rates\[0\] must be a"),
    "plot_learning_rate: rates that are all zero":
        (lambda: figures.plot_learning_rate([0.0, 0.0], 1), ValueError, r"learning_rates must not all be 0"),
    "plot_learning_rate: steps per epoch of 0":
        (lambda: figures.plot_learning_rate([0.1, 0.2], 0), ValueError, r"steps_per_epoch must be a positive int"),
    "plot_training_curves: a dict instead of a history":
        (lambda: figures.plot_training_curves({"epoch": [1], "train_loss": [1.0]}), TypeError,
         r"history must be a vitsteps\.train\.History"),
    "plot_training_curves: an empty history":
        (lambda: figures.plot_training_curves(History()), ValueError, r"history is empty, with no epoch; train"),
    "plot_training_curves: lists of other lengths":
        (lambda: figures.plot_training_curves(History(epoch=[1, 2], train_loss=[1.0], train_accuracy=[0.5, 0.6])),
         ValueError, r"history has 2 epochs but these lists have other lengths: \{'train_loss': 1\}"),
    "plot_training_curves: baselines that are a list":
        (lambda: figures.plot_training_curves(HISTORY, baselines=[("SVC", 0.98)]), TypeError,
         r"baselines must be a dict of name to accuracy"),
    "plot_training_curves: a baseline that is text":
        (lambda: figures.plot_training_curves(HISTORY, baselines={"SVC": "0.98"}), TypeError,
         r"baselines\['SVC'\] must be a number in \[0, 1\]"),
    "plot_confusion_matrix: a matrix that is not square":
        (lambda: figures.plot_confusion_matrix(torch.zeros(2, 3)), ValueError,
         r"matrix must be a square \[K, K\] tensor of counts, got shape \(2, 3\)"),
    "plot_confusion_matrix: a nested list":
        (lambda: figures.plot_confusion_matrix([[1, 0], [0, 1]]), TypeError, r"matrix must be a square \[K, K\]"),
    "plot_confusion_matrix: a negative count":
        (lambda: figures.plot_confusion_matrix(torch.tensor([[1, -1], [0, 2]])), ValueError,
         r"matrix must hold counts \(>= 0\), got a smallest entry of -1"),
    "plot_confusion_matrix: the wrong number of class names":
        (lambda: figures.plot_confusion_matrix(torch.eye(2), class_names=["a", "b", "c"]), ValueError,
         r"class_names has 3 names but the matrix has K=2 classes"),
    "plot_misclassified: fewer labels than images":
        (lambda: figures.plot_misclassified(torch.rand(4, 1, 4, 4), torch.zeros(3).long(), torch.zeros(4).long()),
         ValueError, r"labels must be a 1-D integer tensor \[n\] of class indices with n=4"),
    "plot_misclassified: predictions given as a list":
        (lambda: figures.plot_misclassified(torch.rand(4, 1, 4, 4), torch.zeros(4).long(), [0, 0, 0, 0]), TypeError,
         r"predictions must be a 1-D integer tensor"),
    "plot_misclassified: max_images of 0":
        (lambda: figures.plot_misclassified(torch.rand(2, 1, 4, 4), torch.zeros(2).long(), torch.ones(2).long(),
                                            max_images=0), ValueError, r"max_images must be a positive int"),
    "plot_misclassified: a single image":
        (lambda: figures.plot_misclassified(torch.rand(1, 4, 4), torch.zeros(1).long(), torch.ones(1).long()),
         ValueError, r"images must be a tensor with 4 dimensions"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


def test_a_refused_figure_leaves_no_figure_open():
    with pytest.raises(ValueError, match="patch_size"):
        figures.plot_patch_grid(torch.rand(1, 4, 8), 3)
    assert not plt.get_fignums()


def test_every_figure_is_tested_here_and_refuses_a_bad_input():
    """Here or in `figures/test_<module>.py` (e.g. notebook 08's figures in `figures/test_inside.py`)."""
    folder = Path(__file__).parent
    source = "\n".join(path.read_text() for path in [Path(__file__), *sorted(folder.glob("figures/test_*.py"))])
    drawn_here = set(re.findall(r"\b(?:figures|inside|training)\.(\w+)\(", source))
    refused = set(re.findall(r'^ +"(\w+): ', source, re.MULTILINE))
    assert set(figures.__all__) - {"si_format"} <= drawn_here, "add a behaviour test for these figures"
    assert set(figures.__all__) - {"si_format"} <= refused, "add a bad-input case for these figures"


# the figures of notebooks 01-06, each as those notebooks call it
SERIES_FIGURES = {
    "patch grid, 2x2 patches": lambda: figures.plot_patch_grid(torch.rand(1, 8, 8), 2),
    "patch sequence of 16": lambda: figures.plot_patch_sequence(torch.rand(1, 16, 4), 2),
    "token sources": lambda: figures.plot_token_sources(torch.rand(1, 1, 8, 8), lambda x: x.reshape(1, 4, 16)),
    "token sources in colour": lambda: figures.plot_token_sources(torch.rand(1, 3, 8, 8),
                                                                  lambda x: x.reshape(1, 4, 48)),
    "kernel filters": lambda: figures.plot_kernel_filters(torch.randn(8, 3, 4, 4)),
    "patches to tokens": lambda: figures.plot_patches_to_tokens(torch.rand(1, 8, 8), 2, torch.randn(16, 8)),
    "matrix": lambda: figures.plot_matrix(torch.randn(16, 8), cmap="RdBu_r"),
    "wide matrix": lambda: figures.plot_matrix(torch.randn(50, 64), cmap="RdBu_r"),
    "token sequence of a batch": lambda: figures.plot_token_sequence(torch.randn(3, 5, 8), annotate=True),
    "position similarity": lambda: figures.plot_position_similarity(torch.randn(50, 64), 7),
    "token assembly": lambda: figures.plot_token_assembly(4, 16, torch.randn(17, 8)),
    "attention heads": lambda: figures.plot_attention_heads(softmax_rows(8, 5, 5)),
    "attention heads, 17 tokens": lambda: figures.plot_attention_heads(softmax_rows(4, 17, 17)),
    "attention on the image": lambda: figures.plot_attention_on_image(torch.rand(1, 8, 8), softmax_rows(5, 5), 4, 1),
    "parameter breakdown": lambda: figures.plot_parameter_breakdown(parameter_formula(get_config("vit_base"))),
    "class scores": lambda: figures.plot_class_scores(torch.randn(10), label=3),
    "cost breakdown": lambda: figures.plot_cost_breakdown(parameter_formula(get_config("vit_base")),
                                                          vit_flops(get_config("vit_base"))),
}


@pytest.mark.parametrize("name", list(SERIES_FIGURES))
def test_figure_text_is_at_least_8_points_at_the_size_the_notebook_shows_it(name):
    fig = SERIES_FIGURES[name]()
    assert_readable(fig)


def test_a_notebook_stores_a_figure_at_150_pixels_per_inch_shown_at_its_own_size():
    import base64

    from vitsteps.teach.figures._draw import SCREEN_DPI, png_size, screen_png

    plt.close("all")
    fig = figures.plot_matrix(torch.randn(6, 4), cmap="RdBu_r")
    data, shown = screen_png(fig)
    stored = png_size(base64.b64decode(data))
    assert SCREEN_DPI >= 150 and fig.dpi == 100
    assert stored[0] / shown["width"] >= 1.5 and stored[1] / shown["height"] >= 1.5
    assert stored[0] / shown["width"] < 1.51 and stored[1] / shown["height"] < 1.51  # nothing larger than needed
    assert base64.b64decode(data)[25] == 2  # PNG colour type 2, RGB: an opaque figure stores no alpha channel
    plain = io.BytesIO()
    fig.savefig(plain, format="png", bbox_inches="tight")  # what a notebook stored before, at fig.dpi
    assert abs(png_size(plain.getvalue())[0] - shown["width"]) <= 2  # shown at the size it always was
    assert screen_png(plt.figure()) is None  # nothing drawn, nothing stored
    assert not figures.show_figures_for_screens()  # no IPython kernel here: nothing to set up

