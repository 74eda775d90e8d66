"""vitsteps.teach.figures.training, the figures of notebook 07 on the `mnist` model: shifted digits in their frames,
training curves evaluated every few epochs, the training-set-size sweep and the ablation ladder.

Pictures are checked through what the axes hold (the arrays handed to `imshow`, line and point data, rectangles,
titles and tick labels), so a figure that shows the wrong numbers fails even though it still "draws".
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import assert_all_refused, assert_readable, draw, refusal_cases  # noqa: E402

from vitsteps.data import random_shift  # noqa: E402
from vitsteps.teach.figures import training  # noqa: E402
from vitsteps.teach.figures._draw import GREY  # noqa: E402
from vitsteps.train import History  # noqa: E402


def summary(*values: float) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": list(values)}


def digit_with_a_box() -> torch.Tensor:
    """A 1x12x12 picture whose ink fills rows 4-6 and columns 3-8."""
    image = torch.zeros(1, 12, 12)  # [C, H, W]
    image[0, 4:7, 3:9] = 1.0
    return image


def rectangles(ax: plt.Axes) -> list[tuple[tuple[float, float], float, float, str]]:
    return [(patch.get_xy(), patch.get_width(), patch.get_height(), patch.get_linestyle()) for patch in ax.patches]


# --- shifted digits --------------------------------------------------------------------------------------------

def test_shifted_digits_frame_each_canvas_mark_the_original_ink_and_say_how_far_it_moved():
    image = digit_with_a_box()
    shifted = torch.zeros(3, 1, 12, 12)  # [n, C, H, W]
    shifted[0, 0, 6:9, 3:9] = 1.0    # 2 down
    shifted[1, 0, 3:6, 0:6] = 1.0    # 1 up, 3 left
    shifted[2] = image               # not moved
    fig = draw(training.plot_shifted_digits, image, shifted, title="shifts", per_row=2)
    axes = fig.axes
    assert len(axes) == 2 * 2
    assert [ax.get_title() for ax in axes] == ["original", "2 down", "1 up, 3 left", "not moved"]
    np.testing.assert_array_equal(axes[0].images[0].get_array(), image[0].numpy())
    np.testing.assert_array_equal(axes[2].images[0].get_array(), shifted[1, 0].numpy())
    assert axes[1].images[0].get_cmap().name == GREY["cmap"]
    assert axes[1].images[0].get_clim() == (GREY["vmin"], GREY["vmax"])
    for ax in axes:
        frame, ink = rectangles(ax)
        assert frame[:3] == ((-0.5, -0.5), 12, 12) and frame[3] == "solid"    # the whole canvas
        assert ink[:3] == ((2.5, 3.5), 6, 3) and ink[3] == "--"           # the original's ink, in every panel
        assert ax.get_xlim() == (-1, 12) and ax.get_ylim() == (12, -1)       # the frame is not cut off
    assert fig.get_suptitle() == "shifts"


def test_shifted_digits_read_the_move_off_the_edge_the_canvas_did_not_cut():
    image = torch.zeros(1, 10, 10)
    image[0, 1:4, 2:5] = 1.0         # ink in rows 1-3, columns 2-4
    moved_up = torch.zeros(1, 1, 10, 10)
    moved_up[0, 0, 0:1, 2:5] = 1.0   # 3 up: rows 1-3 -> -2..0, cut by the top edge
    fig = draw(training.plot_shifted_digits, image[None], moved_up)
    assert [ax.get_title() for ax in fig.axes] == ["original", "3 up"]


def test_shifted_digits_of_random_shifts_name_moves_within_the_largest_shift():
    image = digit_with_a_box()
    shifted = random_shift(image.expand(6, -1, -1, -1), 2, torch.Generator().manual_seed(0))  # [6, 1, 12, 12]
    fig = draw(training.plot_shifted_digits, image, shifted)
    assert len(fig.axes) == 7
    for ax in fig.axes[1:]:
        words = ax.get_title().replace(",", "").split()
        steps = [int(word) for word in words if word.isdigit()]
        assert ax.get_title() == "not moved" or (steps and all(1 <= step <= 2 for step in steps))


# --- training curves of a checkpoint's record --------------------------------------------------------------------

def test_training_curves_draw_validation_at_the_evaluated_epochs_and_leave_out_missing_lists():
    history = History(epoch=[1, 2, 3, 4], train_loss=[2.0, 1.5, 1.0, 0.8], val_epoch=[2, 4],
                      val_accuracy=[0.6, 0.9], evaluated_on="validation")
    fig = draw(training.plot_training_curves, history, baselines={"SVC": 0.95})
    loss_ax, accuracy_ax = fig.axes
    (train_loss,) = loss_ax.lines  # no held-out loss recorded
    assert list(train_loss.get_xdata()) == [1, 2, 3, 4]
    validation, svc = accuracy_ax.lines  # no training accuracy recorded
    assert list(validation.get_xdata()) == [2, 4]
    assert list(validation.get_ydata()) == pytest.approx([60, 90])
    assert validation.get_marker() == "o"
    assert [text.get_text() for text in accuracy_ax.get_legend().get_texts()] == ["validation", "SVC 95.0%"]
    assert accuracy_ax.get_ylim() == pytest.approx((57, 100.5))  # the whole held-out curve is in view


def test_training_curves_name_the_held_out_curve_as_asked_and_keep_the_early_training_accuracy_out_of_the_floor():
    history = History(epoch=[1, 2, 3, 4], train_loss=[2.0, 1.5, 1.0, 0.8], train_accuracy=[0.1, 0.2, 0.8, 0.9],
                      val_loss=[1.0] * 4, val_accuracy=[0.5, 0.7, 0.85, 0.9])
    fig = draw(training.plot_training_curves, history, held_out="validation")
    loss_ax, accuracy_ax = fig.axes
    assert [text.get_text() for text in loss_ax.get_legend().get_texts()] == [
        "train (smoothed labels, augmented)", "validation"]
    assert accuracy_ax.get_ylim() == pytest.approx((47, 100.5))  # 50 - 3: the training curve's 10 and 20 are cut


def test_training_curves_label_the_held_out_curve_by_what_it_was_evaluated_on():
    history = History(epoch=[1, 2], train_loss=[1.0, 0.5], train_accuracy=[0.5, 0.7], val_loss=[1.1, 0.6],
                      val_accuracy=[0.4, 0.8])
    fig = draw(training.plot_training_curves, history)
    assert [text.get_text() for text in fig.axes[1].get_legend().get_texts()] == ["train (augmented)", "validation"]
    digits = History(**{**history.as_dict(), "evaluated_on": "test"})
    fig = draw(training.plot_training_curves, digits)
    assert [text.get_text() for text in fig.axes[1].get_legend().get_texts()] == ["train (augmented)", "test"]
    assert fig.axes[1].lines[1].get_marker() in ("None", None, "")


def test_misclassified_lay_out_per_row_panels_within_the_notebook_width():
    images = torch.rand(20, 1, 4, 4)  # [n, C, H, W]
    fig = draw(training.plot_misclassified, images, torch.zeros(20).long(), torch.ones(20).long(), max_images=20,
               per_row=8)
    assert len(fig.axes) == 3 * 8
    assert [ax.get_title() for ax in fig.axes] == ["0 -> 1"] * 20 + [""] * 4
    assert fig.get_figwidth() <= 9.0
    assert fig.get_suptitle() == "20 of 20 wrong (true -> predicted)"
    fig = draw(training.plot_misclassified, images, torch.zeros(20).long(), torch.ones(20).long(), per_row=8)
    assert len(fig.axes) == 2 * 8 and fig.get_suptitle().endswith(", first 16 shown")


def test_misclassified_and_confusion_counts_have_thousands_separators():
    fig = draw(training.plot_misclassified, torch.rand(1200, 1, 2, 2), torch.zeros(1200).long(),
               torch.zeros(1200).long())
    assert fig.get_suptitle() == "0 of 1,200 wrong (true -> predicted)"
    fig = draw(training.plot_confusion_matrix, torch.tensor([[1000, 0], [200, 0]]))
    assert fig.axes[0].get_title().startswith("1,000 of 1,200 right (83.3%)")


# --- the size sweep ----------------------------------------------------------------------------------------------

SWEEP = {"steps": 825, "sizes": [500, 1000, 2000, 3500],
         "vit": {"500": {"test": summary(0.80, 0.82, 0.84)}, "3500": {"test": summary(0.95, 0.96, 0.94)},
                 "1000": {"test": summary(0.88, 0.87, 0.89)}},
         "cnn": {"500": {"test": summary(0.95, 0.96)}, "1000": {"test": summary(0.97, 0.98)}}}


def test_size_sweep_draws_each_model_mean_spread_and_seeds_against_the_sizes_on_a_log_axis():
    fig = draw(training.plot_size_sweep, SWEEP)
    (ax,) = fig.axes
    vit, cnn = ax.containers  # one errorbar each: the mean line, its caps, its spread bars
    vit_line, cnn_line = vit.lines[0], cnn.lines[0]
    assert list(vit_line.get_xdata()) == [500, 1000, 3500]  # sorted by size, the missing 2,000 left out
    assert list(vit_line.get_ydata()) == pytest.approx([82, 88, 95])
    assert list(cnn_line.get_xdata()) == [500, 1000]
    assert list(cnn_line.get_ydata()) == pytest.approx([95.5, 97.5])
    (vit_bars,) = vit.lines[2]
    assert vit_bars.get_segments()[0][:, 1].tolist() == pytest.approx([80, 84])  # mean +- sd of 80, 82, 84
    seeds = {(x, round(y, 6)) for points in ax.collections if not hasattr(points, "get_segments")
             for x, y in points.get_offsets().tolist()}
    assert {(500, 80), (500, 82), (500, 84), (1000, 98)} <= seeds
    assert ax.get_xscale() == "log"
    assert [label.get_text() for label in ax.get_xticklabels()] == ["500", "1,000", "3,500"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "ViT (mnist preset), mean of 3 seeds", "SmallCNN, mean of 2 seeds"]
    assert ax.get_title().startswith("every run 825 optimizer steps")


def test_size_sweep_states_the_steps_the_runs_took_where_they_are_recorded():
    sweep = {"steps": 1100, "vit": {"500": {"test": summary(0.8), "steps": 1104},
                                    "3500": {"test": summary(0.9), "steps": 1100}}}
    assert draw(training.plot_size_sweep, sweep).axes[0].get_title().startswith(
        "every run 1,100 to 1,104 optimizer steps")


def test_size_sweep_says_when_models_have_different_numbers_of_seeds():
    sweep = {"vit": {"500": {"test": summary(0.8)}, "1000": {"test": summary(0.9, 0.91)}}}
    fig = draw(training.plot_size_sweep, sweep, title="sweep")
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "ViT (mnist preset), mean of 1-2 seeds"
    assert fig.axes[0].get_title() == "sweep"


# --- the ablation ladder -----------------------------------------------------------------------------------------

LADDER = {"epochs": 20, "rungs": {
    "reference": {"val": summary(0.93, 0.94, 0.95), "seconds_per_epoch": summary(5.0, 5.2, 5.4)},
    "post-norm": {"val": summary(0.10, 0.12), "seconds_per_epoch": summary(5.0, 5.0)},
    "patch 7 (16 tokens)": {"val": summary(0.70, 0.71, 0.72)}}}


def test_ablation_ladder_draws_every_rung_its_seeds_mean_and_spread_beside_the_reference():
    fig = draw(training.plot_ablation_ladder, LADDER)
    (ax,) = fig.axes
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "reference\n94.0 ± 1.0% (3 seeds)", "post-norm\n11.0 ± 1.4% (2 seeds)",
        "patch 7 (16 tokens)\n71.0 ± 1.0% (3 seeds)"]
    assert ax.yaxis_inverted()  # the reference on top
    reference_line = ax.lines[0]
    assert list(reference_line.get_xdata()) == pytest.approx([94, 94])
    (means,) = [container.lines[0] for container in ax.containers]
    assert list(means.get_xdata()) == pytest.approx([94, 71])  # post-norm is 83 points below: off the axis
    assert list(means.get_ydata()) == [0, 2]
    (bars,) = means.axes.containers[0].lines[2]
    assert bars.get_segments()[0][:, 0].tolist() == pytest.approx([93, 95])  # mean +- sd of 93, 94, 95
    arrow = ax.lines[-1]
    assert (arrow.get_xdata()[0], list(arrow.get_ydata()), arrow.get_marker()) == (pytest.approx(68.48), [1], "<")
    assert ax.get_xlim() == pytest.approx((68, 100))  # 2 points below the lowest seed shown (70)
    dots = {(round(x, 6), y) for points in ax.collections if not hasattr(points, "get_segments")
            for x, y in points.get_offsets().tolist()}
    assert {(93.0, 0.0), (95.0, 0.0), (70.0, 2.0)} <= dots
    assert all(x >= 68 for x, _ in dots)
    assert "further left" in ax.get_xlabel()
    assert ax.get_title().startswith("the ablation ladder: 20 epochs per run")


def test_ablation_ladder_with_every_rung_near_the_reference_draws_no_arrow():
    rungs = {name: value for name, value in LADDER["rungs"].items() if name != "post-norm"}
    fig = draw(training.plot_ablation_ladder, {"rungs": rungs}, title="ladder")
    (ax,) = fig.axes
    assert not [line for line in ax.lines if line.get_marker() == "<"]
    assert ax.get_xlabel() == "validation accuracy (%)"
    assert ax.get_title() == "ladder"


# --- bad input -----------------------------------------------------------------------------------------------------

REFUSED = {
    "plot_shifted_digits: no shifted copies":
        (lambda: training.plot_shifted_digits(torch.rand(1, 8, 8), torch.rand(0, 1, 8, 8)), ValueError,
         r"shifted is empty"),
    "plot_shifted_digits: copies of another size":
        (lambda: training.plot_shifted_digits(torch.rand(1, 8, 8), torch.rand(2, 1, 6, 6)), ValueError,
         r"shifted must hold copies of image, shaped like it: image is \[8, 8\]"),
    "plot_shifted_digits: one copy without its batch dimension":
        (lambda: training.plot_shifted_digits(torch.rand(1, 8, 8), torch.rand(1, 8, 8)), ValueError,
         r"shifted must be a tensor with 4 dimensions"),
    "plot_shifted_digits: a batch of originals":
        (lambda: training.plot_shifted_digits(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)), ValueError,
         r"image must be one image"),
    "plot_shifted_digits: a per_row of 0":
        (lambda: training.plot_shifted_digits(torch.rand(1, 8, 8), torch.rand(2, 1, 8, 8), per_row=0), ValueError,
         r"per_row must be a positive int, got 0"),
    "plot_size_sweep: a list":
        (lambda: training.plot_size_sweep([0.9, 0.95]), TypeError, r"sweep must be a dict with 'steps'"),
    "plot_size_sweep: no model":
        (lambda: training.plot_size_sweep({"steps": 825}), ValueError, r"sweep must be a dict with at least one"),
    "plot_size_sweep: a size that is not a count":
        (lambda: training.plot_size_sweep({"vit": {"all": {"test": summary(0.9)}}}), ValueError,
         r"sweep\['vit'\] must be a dict keyed by training-set sizes such as '500', got 'all'"),
    "plot_size_sweep: a size without test accuracies":
        (lambda: training.plot_size_sweep({"vit": {"500": {"val": summary(0.9)}}}), TypeError,
         r"sweep\['vit'\]\['500'\]\['test'\] must be a summary"),
    "plot_size_sweep: an accuracy that is text":
        (lambda: training.plot_size_sweep({"vit": {"500": {"test": {"values": ["0.9"]}}}}), TypeError,
         r"sweep\['vit'\]\['500'\]\['test'\]\['values'\]\[0\] must be a number >= 0, got '0\.9'"),
    "plot_size_sweep: no seed":
        (lambda: training.plot_size_sweep({"vit": {"500": {"test": {"values": []}}}}), ValueError,
         r"sweep\['vit'\]\['500'\]\['test'\]\['values'\] must be a non-empty list"),
    "plot_ablation_ladder: no rungs":
        (lambda: training.plot_ablation_ladder({"epochs": 15}), TypeError, r"ladder must be a dict with 'rungs'"),
    "plot_ablation_ladder: empty rungs":
        (lambda: training.plot_ablation_ladder({"rungs": {}}), ValueError, r"ladder\['rungs'\] must be a non-empty"),
    "plot_ablation_ladder: a rung without validation accuracies":
        (lambda: training.plot_ablation_ladder({"rungs": {"reference": {"test": summary(0.9)}}}), TypeError,
         r"ladder\['rungs'\]\['reference'\]\['val'\] must be a summary"),
    "plot_ablation_ladder: a negative accuracy":
        (lambda: training.plot_ablation_ladder({"rungs": {"reference": {"val": summary(-0.1)}}}),
         ValueError, r"ladder\['rungs'\]\['reference'\]\['val'\]\['values'\]\[0\] must be a number >= 0"),
    "plot_training_curves: a held-out name that is not text":
        (lambda: training.plot_training_curves(History(epoch=[1], train_loss=[1.0]), held_out=1), TypeError,
         r"held_out must be a str or None, got 1"),
    "plot_misclassified: a per_row of 0":
        (lambda: training.plot_misclassified(torch.rand(2, 1, 4, 4), torch.zeros(2).long(), torch.ones(2).long(),
                                             per_row=0), ValueError, r"per_row must be a positive int, got 0"),
    "plot_training_curves: validation entries that do not match their epochs":
        (lambda: training.plot_training_curves(History(epoch=[1, 2, 3, 4], train_loss=[1.0] * 4, val_epoch=[2, 4],
                                                       val_accuracy=[0.5, 0.6, 0.7])), ValueError,
         r"history has 4 epochs but these lists have other lengths: \{'val_accuracy': 3\} \(the held-out lists "
         r"hold one entry per evaluated epoch: 2\)"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


def test_a_refused_figure_leaves_no_figure_open():
    with pytest.raises(ValueError, match="shifted is empty"):
        training.plot_shifted_digits(torch.rand(1, 8, 8), torch.rand(0, 1, 8, 8))
    assert not plt.get_fignums()


# --- readable at the notebook's size ----------------------------------------------------------------------------

NOTEBOOK_FIGURES = {
    "eight shifted digits": lambda: training.plot_shifted_digits(
        torch.rand(1, 28, 28), torch.rand(7, 1, 28, 28), title="one digit, seven random shifts"),
    "sixteen digits": lambda: training.plot_image_grid(torch.rand(16, 1, 28, 28), [str(k % 10) for k in range(16)],
                                                       title="digits"),
    "training curves every 5 epochs": lambda: training.plot_training_curves(
        History(epoch=list(range(1, 81)), train_loss=[1.0] * 80, val_epoch=list(range(5, 81, 5)),
                val_accuracy=[0.9] * 16, evaluated_on="validation"), baselines={"SVC": 0.95}, title="shipped"),
    "learning rate": lambda: training.plot_learning_rate([0.1, 0.2, 0.1], 1),
    "confusion matrix": lambda: training.plot_confusion_matrix(torch.eye(10).long() * 100),
    "misclassified": lambda: training.plot_misclassified(torch.rand(30, 1, 28, 28), torch.zeros(30).long(),
                                                         torch.ones(30).long()),
    "misclassified, 8 to a row": lambda: training.plot_misclassified(
        torch.rand(30, 1, 28, 28), torch.zeros(30).long(), torch.ones(30).long(), max_images=24, per_row=8),
    "size sweep": lambda: training.plot_size_sweep(SWEEP),
    "ablation ladder": lambda: training.plot_ablation_ladder({"epochs": 15, "rungs": {
        name: {"val": summary(0.9, 0.92), "seconds_per_epoch": summary(5.0, 5.1)} for name in (
            "reference", "no position table", "learned, timm's init", "2-D sin-cos (fixed)", "mean pooling",
            "post-norm", "patch 7 (16 tokens)")}}),
}


@pytest.mark.parametrize("name", list(NOTEBOOK_FIGURES))
def test_figure_text_is_at_least_8_points_at_the_size_the_notebook_shows_it(name):
    fig = NOTEBOOK_FIGURES[name]()
    assert_readable(fig)


def test_every_figure_of_the_module_is_tested_and_refuses_a_bad_input():
    public = {name for name in dir(training) if name.startswith("plot_")}
    here = {name for name in public if f"training.{name}(" in open(__file__, encoding="utf-8").read()}
    refused = {case.split(":")[0] for case in REFUSED}
    new = {"plot_shifted_digits", "plot_size_sweep", "plot_ablation_ladder"}
    assert public - here == set(), "add a test for these figures"
    assert new <= refused, "add a bad-input case for these figures"
