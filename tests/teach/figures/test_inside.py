"""vitsteps.teach.figures.inside, the figures of notebook 08: each draws the numbers it is given, every model on one
shared scale, and refuses bad input naming the parameter.

Checked through what the axes hold (the arrays handed to `imshow`, line and point data, colour limits, titles),
so a figure that shows the wrong numbers or stretches each panel to its own range fails.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import assert_all_refused, assert_readable, draw, drawn, refusal_cases  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402

from vitsteps.analysis import position_rank_correlation, position_similarity  # noqa: E402
from vitsteps.teach import figures  # noqa: E402


@pytest.fixture(autouse=True)
def fixed_seed():
    torch.manual_seed(0)


def texts(items: list[matplotlib.text.Text]) -> list[str]:
    return [item.get_text() for item in items]


def table_with_layout(grid: int, D: int = 16, noise: float = 0.2) -> torch.Tensor:
    """`[1, 1 + grid*grid, D]`: a CLS row, then patch rows that vary smoothly with the patch's place."""
    row, col = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")  # [grid, grid] each
    frequencies = torch.linspace(0.3, 1.2, D // 2)  # [D/2]
    angle = torch.cat([row.flatten()[:, None] * frequencies, col.flatten()[:, None] * frequencies], dim=1)  # [N, D]
    patch_rows = angle.cos() + noise * torch.randn(grid * grid, D)  # [N, D]
    return torch.cat([torch.randn(1, D), patch_rows])[None]  # [1, L, D]


# ------------------------------------------------------------------------------------------- position layout


def test_position_layout_draws_each_table_as_its_grid_of_maps_on_one_scale_with_its_rank_correlation():
    trained, fresh = table_with_layout(3), torch.randn(1, 10, 16) * 0.02
    fig = draw(figures.plot_position_layout, {"trained": trained, "fresh": fresh}, 3, title="layout")
    panels = [ax for ax in fig.axes if ax.images and ax.get_xlabel()]
    assert len(panels) == 2 and len(fig.axes) == 3  # two mosaics and a colour bar
    for ax, table, name in zip(panels, (trained, fresh), ("trained", "fresh"), strict=True):
        mosaic = drawn(ax.images[0])
        assert mosaic.shape == (3 * 4 - 1, 3 * 4 - 1)  # 3x3 maps of 3x3, one blank pixel apart
        similarity = position_similarity(table, 3).numpy()  # [3, 3, 3, 3]
        for r in range(3):
            for c in range(3):
                np.testing.assert_allclose(mosaic[4 * r:4 * r + 3, 4 * c:4 * c + 3], similarity[r, c], rtol=1e-6)
        assert np.isnan(mosaic[3]).all() and np.isnan(mosaic[:, 7]).all()
        assert ax.images[0].get_clim() == (-1, 1)  # fixed, never stretched to the table's own range
        assert ax.get_title() == f"{name}\nrank correlation {position_rank_correlation(table, 3, 1):+.2f}"
        assert texts(ax.get_xticklabels()) == ["0", "1", "2"]
    assert position_rank_correlation(trained, 3, 1) < -0.5
    assert fig.get_suptitle() == "layout"


def test_position_layout_of_one_table_without_a_cls_row_has_no_name_in_its_title():
    fig = draw(figures.plot_position_layout, torch.randn(4, 8), (2, 2), num_prefix_tokens=0)
    ax = fig.axes[0]
    assert ax.get_title().startswith("rank correlation ")
    assert drawn(ax.images[0]).shape == (2 * 3 - 1, 2 * 3 - 1)


# ------------------------------------------------------------------------------------------- layout curve


def test_layout_curve_draws_a_line_per_run_their_mean_where_all_are_defined_and_the_references():
    seen = [0, 100, 200, 300]
    curves = {"seed 0": [None, -0.1, -0.3, -0.5], "seed 1": [None, -0.2, -0.2, -0.6]}
    fig = draw(figures.plot_layout_curve, seen, curves, {"fresh": -0.02}, title="curve")
    (ax,) = fig.axes
    seed_0, seed_1, mean, reference, zero = ax.lines
    np.testing.assert_array_equal(seed_0.get_xdata(), seen)
    np.testing.assert_allclose(seed_0.get_ydata(), [np.nan, -0.1, -0.3, -0.5])
    np.testing.assert_allclose(seed_1.get_ydata(), [np.nan, -0.2, -0.2, -0.6])
    np.testing.assert_array_equal(mean.get_xdata(), [100, 200, 300])
    np.testing.assert_allclose(mean.get_ydata(), [-0.15, -0.25, -0.55])
    assert list(reference.get_ydata()) == [-0.02, -0.02] and list(zero.get_ydata()) == [0, 0]
    assert texts(ax.get_legend().get_texts()) == ["seed 0", "seed 1", "mean of the 2", "fresh (-0.02)"]
    assert ax.get_ylim()[0] <= -1 and ax.get_title() == "curve"


def test_layout_curve_of_one_run_draws_no_mean():
    fig = draw(figures.plot_layout_curve, [1, 2], {"only": [-0.5, -0.7]})
    assert len(fig.axes[0].lines) == 2  # the run and the zero line


# ------------------------------------------------------------------------------------------- attention distance


def test_attention_distance_draws_each_model_on_one_scale_with_the_uniform_and_self_only_lines():
    trained, fresh = torch.rand(3, 2) * 10, torch.full((3, 2), 14.0)  # [depth, h]
    seeds = torch.tensor([[5.0, 6.0, 7.0], [7.0, 8.0, 9.0]])  # [S, depth]
    fig = draw(figures.plot_attention_distance, {"trained": trained, "fresh": fresh}, uniform=14.4,
               seed_means={"trained": seeds}, title="far")
    left, right = fig.axes
    assert left.get_shared_y_axes().joined(left, right)  # one scale for both
    for ax, values in ((left, trained), (right, fresh)):
        heads = ax.collections[:2]
        for head, points in enumerate(heads):
            np.testing.assert_allclose(points.get_offsets(), np.stack([np.arange(3), values[:, head].numpy()], 1),
                                       rtol=1e-6)
        mean = ax.lines[0]
        np.testing.assert_allclose(mean.get_ydata(), values.mean(dim=1).numpy(), rtol=1e-6)
        levels = sorted(line.get_ydata()[0] for line in ax.lines[-2:])
        assert levels == pytest.approx([0.0, 14.4])  # self only, uniform
    errorbar = left.containers[0]
    np.testing.assert_allclose(errorbar.lines[0].get_ydata(), [6.0, 7.0, 8.0])
    assert not right.containers
    assert [left.get_title(), right.get_title()] == ["trained", "fresh"]
    legend = texts(fig.legends[0].get_texts())
    assert "uniform: all patches alike (14.4 px)" in legend and "self only: its own patch (0 px)" in legend
    assert "mean of heads, 2 seeds" in legend
    assert fig.get_suptitle() == "far"


def test_attention_distance_takes_one_tensor_and_no_uniform_value():
    fig = draw(figures.plot_attention_distance, torch.rand(2, 1))
    (ax,) = fig.axes
    assert ax.get_title() == "" and len(ax.lines) == 2  # the mean and the self-only line


# ------------------------------------------------------------------------------------------- attention maps


def test_attention_maps_put_every_map_on_the_same_fixed_scale_beside_its_image():
    images = torch.rand(2, 1, 8, 8)  # [B, C, H, W]
    peaked = torch.zeros(2, 4, 4)  # [B, rows, cols]
    peaked[:, 1, 2] = 0.9
    flat = torch.full((2, 4, 4), 1 / 16)
    fig = draw(figures.plot_attention_maps, images, {"peaked": peaked, "flat": flat}, labels=["a", "b"], title="t")
    panels = [ax for ax in fig.axes if ax.images][:6]
    assert len(panels) == 6  # 2 rows of image, peaked, flat
    for row in range(2):
        image, left, right = panels[3 * row:3 * row + 3]
        assert image.images[0].get_cmap().name == "gray_r"  # ink dark on white
        assert image.get_ylabel() == ["a", "b"][row]
        np.testing.assert_array_equal(drawn(left.images[0]), peaked[row].numpy())
        np.testing.assert_array_equal(drawn(right.images[0]), flat[row].numpy())
        for ax in (left, right):
            assert ax.images[0].get_clim() == (0, 1)  # a flat map is not stretched to fill the colours
    assert [ax.get_title() for ax in panels[:3]] == ["image", "peaked", "flat"]
    bar = fig.axes[-1]
    assert "1/16" in texts(bar.get_yticklabels())
    assert bar.get_ylabel() == "attention weight (uniform: 1/16)"


def test_attention_maps_with_a_gamma_keep_the_fixed_scale_and_compress_it():
    fig = draw(figures.plot_attention_maps, torch.rand(1, 1, 4, 4), torch.rand(1, 2, 2) / 4, vmax=0.5, gamma=0.5)
    heat = fig.axes[1].images[0]
    assert isinstance(heat.norm, PowerNorm) and heat.norm.gamma == 0.5
    assert heat.get_clim() == (0, 0.5)
    assert "1" not in texts(fig.axes[-1].get_yticklabels())  # the scale ends at vmax


# ------------------------------------------------------------------------------------------- filter components


def test_filter_components_draw_a_captioned_row_per_model_on_one_symmetric_scale():
    trained, fresh = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2) * 0.1  # [K, C, P, P]
    share = torch.tensor([0.5, 0.3, 0.2])
    fig = draw(figures.plot_filter_components, {"trained": trained, "fresh": fresh},
               {"trained": share, "fresh": share})
    panels = fig.axes[:-1]
    assert len(panels) == 6 and not fig.axes[-1].get_title()  # 2 rows of 3, and a colour bar
    limit = float(trained.abs().max())
    for index, ax in enumerate(panels):
        values = (trained if index < 3 else fresh)[index % 3, 0]
        np.testing.assert_array_equal(drawn(ax.images[0]), values.numpy())
        assert ax.images[0].get_clim() == pytest.approx((-limit, limit))
    assert [ax.get_title() for ax in panels[:3]] == ["PC 0 50%", "PC 1 30%", "PC 2 20%"]
    assert [panels[0].get_ylabel(), panels[3].get_ylabel()] == ["trained", "fresh"]


def test_filter_components_of_one_model_take_its_shares_as_a_tensor():
    fig = draw(figures.plot_filter_components, torch.randn(2, 3, 2, 2), torch.tensor([0.75, 0.25]), title="two")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["PC 0 75%", "PC 1 25%"]
    assert fig.axes[0].get_ylabel() == "" and fig.get_suptitle() == "two"


def test_filter_components_leave_spare_panels_blank_when_a_model_has_fewer():
    fig = draw(figures.plot_filter_components, {"a": torch.randn(3, 1, 2, 2), "b": torch.randn(2, 1, 2, 2)})
    assert not fig.axes[5].images and not fig.axes[5].axison


# ------------------------------------------------------------------------------------------- bad input

REFUSED = {
    "plot_position_layout: an empty dict": (lambda: figures.plot_position_layout({}, 3), ValueError,
                                            r"tables must be a non-empty dict"),
    "plot_position_layout: names that are not text":
        (lambda: figures.plot_position_layout({0: torch.randn(10, 4)}, 3), TypeError,
         r"tables must be a dict whose names are str"),
    "plot_position_layout: a table that does not fit the grid":
        (lambda: figures.plot_position_layout({"a": torch.randn(10, 4)}, 4), ValueError,
         r"grid_size=4 gives 16 patches"),
    "plot_position_layout: a table of zeros":
        (lambda: figures.plot_position_layout({"fresh": torch.zeros(10, 4)}, 3), ValueError,
         r"9 patch rows that are all zeros"),
    "plot_layout_curve: no points": (lambda: figures.plot_layout_curve([], {"a": []}), TypeError,
                                     r"images_seen must be a non-empty list of ints"),
    "plot_layout_curve: a curve of the wrong length":
        (lambda: figures.plot_layout_curve([1, 2, 3], {"a": [0.1, 0.2]}), ValueError,
         r"curves\['a'\] must be 3 scores"),
    "plot_attention_distance: distances of one layer as a vector":
        (lambda: figures.plot_attention_distance(torch.rand(4)), ValueError, r"distances must be a tensor with 2 "),
    "plot_attention_distance: a uniform distance of 0":
        (lambda: figures.plot_attention_distance(torch.rand(2, 2), uniform=0.0), ValueError,
         r"uniform must be .*> 0"),
    "plot_attention_distance: seed means of another depth":
        (lambda: figures.plot_attention_distance({"t": torch.rand(2, 2)}, seed_means={"t": torch.rand(3, 4)}),
         ValueError, r"seed_means\['t'\] must be \[S, depth=2\]"),
    "plot_attention_distance: seed means of a model not drawn":
        (lambda: figures.plot_attention_distance({"t": torch.rand(2, 2)}, seed_means={"x": torch.rand(3, 2)}),
         ValueError, r"use the names \['t'\]"),
    "plot_attention_maps: fewer maps than images":
        (lambda: figures.plot_attention_maps(torch.rand(3, 1, 8, 8), {"a": torch.rand(2, 4, 4)}), ValueError,
         r"maps\['a'\] must be one map per image, \[3, rows, cols\]"),
    "plot_attention_maps: a grid that does not tile the images":
        (lambda: figures.plot_attention_maps(torch.rand(2, 1, 8, 8), {"a": torch.rand(2, 3, 3)}), ValueError,
         r"has a 3x3 grid that does not tile the 8x8 images"),
    "plot_attention_maps: a map without the batch dimension":
        (lambda: figures.plot_attention_maps(torch.rand(1, 1, 8, 8), torch.rand(4, 4)), ValueError,
         r"maps must be a tensor with 3 dim"),
    "plot_attention_maps: the wrong number of labels":
        (lambda: figures.plot_attention_maps(torch.rand(2, 1, 8, 8), torch.rand(2, 4, 4), labels=["a"]),
         ValueError, r"labels must be 2 captions"),
    "plot_attention_maps: a scale above 1":
        (lambda: figures.plot_attention_maps(torch.rand(1, 1, 8, 8), torch.rand(1, 4, 4), vmax=2.0), ValueError,
         r"vmax must be"),
    "plot_attention_maps: a gamma of 0":
        (lambda: figures.plot_attention_maps(torch.rand(1, 1, 8, 8), torch.rand(1, 4, 4), gamma=0.0), ValueError,
         r"gamma must be"),
    "plot_filter_components: a single component":
        (lambda: figures.plot_filter_components(torch.rand(1, 2, 2)), ValueError, r"components must be a tensor with"),
    "plot_filter_components: shares that are not one per component":
        (lambda: figures.plot_filter_components(torch.rand(4, 1, 2, 2), torch.rand(3)), ValueError,
         r"shares must be a \[K\] tensor with K=4"),
    "plot_filter_components: shares given as a list":
        (lambda: figures.plot_filter_components({"a": torch.rand(4, 1, 2, 2)}, {"a": [0.25] * 4}), TypeError,
         r"shares\['a'\] must be a \[K\] tensor with K=4"),
    "plot_filter_components: shares of a model not drawn":
        (lambda: figures.plot_filter_components({"a": torch.rand(2, 1, 2, 2)}, {"b": torch.rand(2)}), ValueError,
         r"shares\['b'\] must be a \[K\] tensor"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


def test_a_refused_figure_leaves_no_figure_open():
    with pytest.raises(ValueError, match="uniform"):
        figures.plot_attention_distance(torch.rand(2, 2), uniform=-1.0)
    with pytest.raises(ValueError, match="zeros"):
        figures.plot_position_layout({"fresh": torch.zeros(10, 4)}, 3)
    assert not plt.get_fignums()


# the figures of notebook 08, at the sizes it draws them: the mnist model's 7x7 grid, 6 layers of 4 heads
NOTEBOOK_FIGURES = {
    "position layout, trained beside fresh": lambda: figures.plot_position_layout(
        {"trained": table_with_layout(7, 64), "fresh, timm init": torch.randn(1, 50, 64) * 0.02}, 7),
    "layout curve, 3 seeds": lambda: figures.plot_layout_curve(
        [5 * 3500 * e for e in range(17)], {f"seed {s}": [None, *(-0.03 * e for e in range(1, 17))] for s in range(3)},
        {"fresh, timm init (3 seeds)": 0.01}),
    "attention distance, trained beside fresh": lambda: figures.plot_attention_distance(
        {"trained": torch.rand(6, 4) * 15, "fresh": torch.full((6, 4), 14.4)}, 14.44,
        {"trained": torch.rand(3, 6) * 15}),
    "attention maps, 4 digits": lambda: figures.plot_attention_maps(
        torch.rand(4, 1, 28, 28), {f"{model}\n{what}": torch.rand(4, 7, 7) / 20 for model in ("trained", "fresh")
                                   for what in ("CLS, last layer", "rollout")}, labels=["3 -> 3"] * 4, gamma=0.5),
    "filter components, trained beside fresh": lambda: figures.plot_filter_components(
        {"trained": torch.randn(8, 1, 4, 4), "fresh": torch.randn(8, 1, 4, 4)},
        {"trained": torch.rand(8), "fresh": torch.rand(8)}),
}


@pytest.mark.parametrize("name", list(NOTEBOOK_FIGURES))
def test_figure_text_is_at_least_8_points_at_the_size_the_notebook_shows_it(name):
    fig = NOTEBOOK_FIGURES[name]()
    assert_readable(fig)
    renderer = fig.canvas.get_renderer()
    wide = [ax.get_title() for ax in fig.axes if ax.get_title()
            and ax.title.get_window_extent(renderer).width > 1.2 * ax.get_window_extent(renderer).width]
    assert not wide, f"titles wider than their panels run into their neighbours: {wide}"
