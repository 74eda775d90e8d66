"""Figures of notebook 07: images with captions, shifted digits in their frames, the learning-rate schedule,
training curves, the confusion matrix, the images a model got wrong, the training-set-size sweep and the ablation
ladder (the last two read from `vitsteps.train.load_results("mnist")`).

Shape legend: n images, C channels, H W image, K classes.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ... import _validate
from ...train import History
from ._draw import SMALLEST_FONT, as_image, grid_shape, show_image

PANEL_WIDTH = 1.08  # inches of one image panel in a row: 8 to a row fit the notebook's 9 inches


def plot_image_grid(images: torch.Tensor, titles: list[str] | None = None, title: str | None = None,
                    per_row: int = 8) -> Figure:
    """Small images side by side, `per_row` to a row, each with an optional caption (e.g. its label).

    Args:
        images: `[n, C, H, W]` images.
        titles: `n` captions.
        title: figure title.
        per_row: panels per row.
    """
    _validate.tensor(images, "images", 4, "[n, C, H, W]")
    _validate.positive_int(per_row, "per_row")
    n = len(images)
    if n == 0:
        raise ValueError("images is empty, got shape (0, ...); pass at least one image.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} captions for {n} images; pass one caption per image.")
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_WIDTH * cols + 0.3, 1.2 * rows + (0.4 if title else 0.1)),
                             squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < n:
            show_image(ax, as_image(images[index]))
            if titles is not None:
                ax.set_title(str(titles[index]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_learning_rate(learning_rates: list[float], steps_per_epoch: int, title: str | None = None) -> Figure:
    """A learning-rate schedule, one value per optimizer step, against epochs (warm-up shaded).

    Args:
        learning_rates: the rate at every step, e.g. `[lr * train.warmup_cosine(s, total, warmup) ...]`.
        steps_per_epoch: steps in one epoch, to label the x axis in epochs.
        title: figure title.
    """
    if not isinstance(learning_rates, (list, tuple)) or not learning_rates:
        _validate.fail(TypeError, "learning_rates", "a non-empty list of numbers, one per step", learning_rates,
                       "pass e.g. [lr * warmup_cosine(s, total, warmup) for s in range(total)]")
    for step, rate in enumerate(learning_rates):
        _validate.number_in(rate, f"learning_rates[{step}]", 0, example="1e-3")
    if max(learning_rates) <= 0:
        raise ValueError(f"learning_rates must not all be 0, got {len(learning_rates)} zeros; pass the rate of "
                         f"every optimizer step.")
    _validate.positive_int(steps_per_epoch, "steps_per_epoch")
    values = np.asarray(learning_rates, dtype=float)
    epochs = np.arange(1, len(values) + 1) / steps_per_epoch
    peak = int(values.argmax())
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    ax.plot(epochs, values, color="tab:blue")
    ax.axvspan(0, epochs[peak], color="tab:orange", alpha=0.2, label="warm-up")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, epochs[-1])
    ax.set_ylim(0, values.max() * 1.08)
    ax.legend(fontsize=SMALLEST_FONT)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"peak {values.max():g} after {epochs[peak]:.0f} epochs, then a cosine down to 0",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_training_curves(history: object, baselines: dict[str, float] | None = None,
                         title: str | None = None, held_out: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training and held-out images side by side, with optional baseline accuracies as
    lines. The held-out curve is drawn at the epochs that were evaluated (`history.val_epoch`, e.g. every 5th;
    every epoch when it is empty) and named by what it was evaluated on (`history.evaluated_on`: "validation", or
    "test" for a digits split); a list the history does not hold (the training accuracy of a checkpoint's record,
    say) is left out.

    Args:
        history: a `vitsteps.train.History` (lists `epoch`, `train_loss`, and optionally `train_accuracy`,
            `val_loss`, `val_accuracy`, `val_epoch`).
        baselines: name to accuracy in [0, 1], drawn as dashed horizontal lines, e.g. `{"SVC": 0.99}`.
        title: figure title.
        held_out: the name of the held-out curve; by default `history.evaluated_on`.
    """
    _validate.instance(history, "history", History, "a vitsteps.train.History", "pass what train() returned")
    if held_out is not None:
        _validate.instance(held_out, "held_out", str, "a str or None", 'pass e.g. "validation"')
    if not history.epoch:
        raise ValueError("history is empty, with no epoch; train for at least one epoch first.")
    epochs_run = len(history.epoch)
    evaluated = history.val_epoch or history.epoch  # the epochs of the held-out entries
    expected = {"train_loss": epochs_run, "train_accuracy": epochs_run, "val_loss": len(evaluated),
                "val_accuracy": len(evaluated)}
    lengths = {name: len(getattr(history, name)) for name in expected}
    wrong = {name: length for name, length in lengths.items()
             if length != expected[name] and (length or name == "train_loss")}  # a list may be left empty
    if wrong:
        raise ValueError(f"history has {epochs_run} epochs but these lists have other lengths: {wrong} (the held-out "
                         f"lists hold one entry per evaluated epoch: {len(evaluated)}); pass what train() returned.")
    if baselines is not None:
        _validate.instance(baselines, "baselines", dict, "a dict of name to accuracy", "pass e.g. {'SVC': 0.99}")
    for name, accuracy in (baselines or {}).items():
        _validate.number_in(accuracy, f"baselines[{name!r}]", 0, 1, example="0.99 (an accuracy)")
    held_out = history.evaluated_on if held_out is None else held_out
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    loss_ax.plot(history.epoch, history.train_loss, label="train (smoothed labels, augmented)", color="tab:blue")
    if history.train_accuracy:
        accuracy_ax.plot(history.epoch, [100 * a for a in history.train_accuracy], label="train (augmented)",
                         color="tab:blue")
    marker = "o" if len(evaluated) < epochs_run else None
    if history.val_loss:
        loss_ax.plot(evaluated, history.val_loss, label=held_out, color="tab:orange", marker=marker, markersize=3)
    if history.val_accuracy:
        accuracy_ax.plot(evaluated, [100 * a for a in history.val_accuracy], label=held_out, color="tab:orange",
                         marker=marker, markersize=3)
    for index, (name, accuracy) in enumerate((baselines or {}).items()):
        accuracy_ax.axhline(100 * accuracy, linestyle="--", linewidth=1, color=f"C{index + 2}",
                            label=f"{name} {100 * accuracy:.1f}%")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("loss", fontsize=10)
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_ylabel("accuracy (%)")
    accuracy_ax.set_title("accuracy", fontsize=10)
    # the floor: the whole held-out curve, the later half of the training curve (its start is near chance)
    shown = history.val_accuracy + history.train_accuracy[len(history.train_accuracy) // 2:]
    low = min([100 * a for a in shown] + [100 * a for a in (baselines or {}).values()] or [0.0])
    accuracy_ax.set_ylim(max(0.0, low - 3), 100.5)
    for ax in (loss_ax, accuracy_ax):
        ax.set_xlim(0, history.epoch[-1] + 0.5)
        if ax.lines:
            ax.legend(fontsize=SMALLEST_FONT)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: torch.Tensor, class_names: list[str] | tuple[str, ...] | None = None,
                          title: str | None = None) -> Figure:
    """Counts of true (rows) against predicted (columns) classes; the diagonal holds the correct answers.

    Args:
        matrix: `[K, K]` counts, e.g. from `vitsteps.train.confusion_matrix`.
        class_names: `K` names; by default `0..K-1`.
        title: figure title; by default it states the accuracy.
    """
    _validate.instance(matrix, "matrix", torch.Tensor, "a square [K, K] tensor of counts",
                       "use train.confusion_matrix()")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be a square [K, K] tensor of counts, got shape {tuple(matrix.shape)}; "
                         f"use train.confusion_matrix().")
    if bool((matrix < 0).any()):
        raise ValueError(f"matrix must hold counts (>= 0), got a smallest entry of {matrix.min().item()}; "
                         f"use train.confusion_matrix().")
    K = matrix.shape[0]
    names = [str(k) for k in range(K)] if class_names is None else [str(name) for name in class_names]
    if len(names) != K:
        raise ValueError(f"class_names has {len(names)} names but the matrix has K={K} classes; pass one name "
                         f"per class.")
    counts = matrix.detach().cpu().long().numpy()
    total = int(counts.sum())
    fig, ax = plt.subplots(figsize=(0.42 * K + 1.8, 0.42 * K + 1.4))
    ax.imshow(np.log1p(counts), cmap="Blues", interpolation="nearest")
    for (row, col), count in np.ndenumerate(counts):
        if count:
            ax.text(col, row, str(count), ha="center", va="center", fontsize=SMALLEST_FONT,
                    color="white" if row == col else "tab:red")
    ax.set_xticks(range(K), names, fontsize=8)
    ax.set_yticks(range(K), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct = int(np.trace(counts))
    ax.set_title(title or f"{correct:,} of {total:,} right ({100 * correct / max(total, 1):.1f}%); "
                 f"mistakes in red", fontsize=9)
    fig.tight_layout()
    return fig


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                       max_images: int = 16, title: str | None = None, per_row: int | None = None) -> Figure:
    """The images the model got wrong, each titled `true -> predicted`.

    Args:
        images: `[n, C, H, W]` images.
        labels: `[n]` true classes.
        predictions: `[n]` predicted classes.
        max_images: at most this many panels, in the order of `images`.
        title: figure title; by default it states how many were wrong.
        per_row: panels per row; by default a near-square grid.
    """
    _validate.tensor(images, "images", 4, "[n, C, H, W]")
    _validate.positive_int(max_images, "max_images")
    _validate.labels(labels, "labels", len(images))
    _validate.labels(predictions, "predictions", len(images))
    wrong = (labels != predictions).nonzero().flatten().tolist()
    shown = wrong[:max_images]
    if per_row is None:
        rows, cols = grid_shape(max(len(shown), 1))
    else:
        _validate.positive_int(per_row, "per_row")
        cols = min(per_row, max(len(shown), 1))
        rows = math.ceil(max(len(shown), 1) / cols)
    panel = min(1.3, 8.7 / cols)  # inches a panel: rows of up to 6 at full size, longer ones within 9 inches
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols + 0.3, (panel + 0.15) * rows + 0.5), squeeze=False)
    for panel, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if panel < len(shown):
            index = shown[panel]
            show_image(ax, as_image(images[index]))
            ax.set_title(f"{int(labels[index])} -> {int(predictions[index])}", fontsize=9, color="tab:red")
    if not shown:
        axes[0][0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title or f"{len(wrong):,} of {len(images):,} wrong (true -> predicted)"
                 + (f", first {len(shown)} shown" if len(wrong) > len(shown) else ""), fontsize=10)
    fig.tight_layout()
    return fig


def _ink_box(picture: np.ndarray) -> tuple[int, int, int, int] | None:
    """`(top, bottom, left, right)` pixel rows and columns of the ink (values above 0) of an `[H, W]` picture, or
    None when it holds none."""
    rows, cols = np.nonzero(picture > 0)
    if not len(rows):
        return None
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def _offset_words(before: tuple[int, int, int, int], after: tuple[int, int, int, int], H: int, W: int) -> str:
    """How far the ink box moved, e.g. "2 down, 1 left", read off the edge that the canvas did not cut."""
    top, bottom, left, right = after
    down = (bottom - before[1]) if top == 0 and bottom < H - 1 else (top - before[0])
    across = (right - before[3]) if left == 0 and right < W - 1 else (left - before[2])
    words = [f"{abs(down)} {'down' if down > 0 else 'up'}" if down else "",
             f"{abs(across)} {'right' if across > 0 else 'left'}" if across else ""]
    return ", ".join(word for word in words if word) or "not moved"


def plot_shifted_digits(image: torch.Tensor, shifted: torch.Tensor, title: str | None = None,
                        per_row: int = 8) -> Figure:
    """An image and shifted copies of it, each framed by its canvas so that the blank border a shift uncovers
    shows: a grey frame marks the canvas, a dashed orange box the ink's place in the original, and each copy is
    captioned by how far its ink moved (read off the ink's bounding box).

    Args:
        image: the original, `[C, H, W]` or `[1, C, H, W]` (one channel or three).
        shifted: `[n, C, H, W]` copies of it, e.g. from `vitsteps.data.random_shift`.
        title: figure title.
        per_row: panels per row, the original included.
    """
    original = as_image(image)
    _validate.tensor(shifted, "shifted", 4, "[n, C, H, W]")
    _validate.positive_int(per_row, "per_row")
    if len(shifted) == 0:
        raise ValueError("shifted is empty, got shape (0, ...); pass at least one shifted copy [n, C, H, W].")
    pictures = [as_image(copy) for copy in shifted]
    if pictures[0].shape != original.shape:
        raise ValueError(f"shifted must hold copies of image, shaped like it: image is {list(original.shape)}, a "
                         f"copy is {list(pictures[0].shape)}; pass the output of random_shift(image, ...).")
    H, W = original.shape[:2]
    count = 1 + len(pictures)
    cols = min(per_row, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_WIDTH * cols + 0.3, 1.3 * rows + (0.4 if title else 0.1)),
                             squeeze=False)
    box = _ink_box(original if original.ndim == 2 else original.max(axis=2))
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index >= count:
            continue
        picture = original if index == 0 else pictures[index - 1]
        show_image(ax, picture)
        ax.add_patch(plt.Rectangle((-0.5, -0.5), W, H, fill=False, edgecolor="0.45", linewidth=1.2))
        if box is not None:
            top, bottom, left, right = box
            ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                                       edgecolor="tab:orange", linestyle="--", linewidth=1))
        moved = _ink_box(picture if picture.ndim == 2 else picture.max(axis=2))
        caption = "original" if index == 0 else _offset_words(box, moved, H, W) if box and moved else ""
        ax.set_title(caption, fontsize=SMALLEST_FONT)
        ax.set_xlim(-1, W)
        ax.set_ylim(H, -1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _summary_values(entry: object, name: str) -> list[float]:
    """The per-seed values of a results summary `{"mean", "sd", "values"}`, checked to be accuracies or seconds."""
    if not isinstance(entry, Mapping) or "values" not in entry:
        _validate.fail(TypeError, name, 'a summary {"mean": ..., "sd": ..., "values": [...]}', entry,
                       'pass the section of vitsteps.train.load_results("mnist") as it is')
    values = entry["values"]
    if not isinstance(values, (list, tuple)) or not values:
        _validate.fail(ValueError, f"{name}['values']", "a non-empty list of numbers, one per seed", values,
                       'pass the section of vitsteps.train.load_results("mnist") as it is')
    for seed, value in enumerate(values):
        _validate.number_in(value, f"{name}['values'][{seed}]", 0, example="0.97")
    return [float(value) for value in values]


FAR = 40.0  # points below the reference beyond which the ladder figure draws a rung as an arrow at its edge
SWEEP_LABELS = {"vit": "ViT (mnist preset)", "cnn": "SmallCNN"}  # how the size sweep names its models


def plot_size_sweep(sweep: Mapping[str, object], title: str | None = None) -> Figure:
    """Test accuracy against the number of training images, one line per model: every seed as a dot, the mean
    joined by a line, the spread (standard deviation over seeds) as a bar.

    Args:
        sweep: the `"sweep"` section of `vitsteps.train.load_results("mnist")`: `"steps"` (the optimizer steps
            every run aims at), and per model (`"vit"`, `"cnn"`) a dict from the training-set size (as text, e.g.
            `"500"`) to `{"test": {"mean", "sd", "values"}, "steps": int}`, accuracies in [0, 1]. Sizes not yet
            measured are left out.
        title: axes title; by default it states the steps the runs took (their own `"steps"` where recorded).
    """
    fix = 'pass load_results("mnist")["sweep"]'
    if not isinstance(sweep, Mapping):
        _validate.fail(TypeError, "sweep", "a dict with 'steps' and a dict of sizes per model", sweep, fix)
    models = {key: value for key, value in sweep.items() if isinstance(value, Mapping) and value}
    if not models:
        _validate.fail(ValueError, "sweep", "a dict with at least one model's sizes, e.g. 'vit'", dict(sweep), fix)
    curves: dict[str, tuple[list[int], list[list[float]]]] = {}
    for model, entries in models.items():
        sizes = []
        for size in entries:
            if not (isinstance(size, str) and size.isdigit() and int(size) > 0):
                _validate.fail(ValueError, f"sweep[{model!r}]", "a dict keyed by training-set sizes such as '500'",
                               size, fix)
            sizes.append(int(size))
        sizes.sort()
        curves[model] = (sizes, [_summary_values(entries[str(size)].get("test") if isinstance(
            entries[str(size)], Mapping) else None, f"sweep[{model!r}][{str(size)!r}]['test']") for size in sizes])
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    every_size = sorted({size for sizes, _ in curves.values() for size in sizes})
    for index, (model, (sizes, values)) in enumerate(curves.items()):
        colour = f"C{index}"
        means = [100 * float(np.mean(seeds)) for seeds in values]
        spreads = [100 * float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0 for seeds in values]
        seeds = sorted({len(seeds) for seeds in values})
        counted = f"{seeds[0]} seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1 else \
            f"{seeds[0]}-{seeds[-1]} seeds"
        ax.errorbar(sizes, means, yerr=spreads, color=colour, marker="o", markersize=4, capsize=3, linewidth=1.5,
                    label=f"{SWEEP_LABELS.get(model, model)}, mean of {counted}")
        for size, seed_values in zip(sizes, values, strict=True):
            ax.scatter([size] * len(seed_values), [100 * v for v in seed_values], s=10, color=colour, alpha=0.45,
                       linewidths=0)
    ax.set_xscale("log")
    ax.set_xticks(every_size, [f"{size:,}" for size in every_size])
    ax.minorticks_off()
    ax.set_xlabel("training images")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=SMALLEST_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(curves),
              frameon=False)  # under the axes, where it covers no seed
    # the runs' own step counts where they are recorded (a size that does not divide evenly rounds its epochs)
    counts = sorted({entry["steps"] for entries in models.values() for entry in entries.values()
                     if isinstance(entry, Mapping) and isinstance(entry.get("steps"), int)})
    if not counts and isinstance(sweep.get("steps"), int):
        counts = [sweep["steps"]]
    steps = "" if not counts else f"every run {counts[0]:,}" + (f" to {counts[-1]:,}" if len(counts) > 1 else "")
    ax.set_title(title or (f"{steps} optimizer steps; dots: seeds, bars: spread (sd)" if steps
                           else "dots: seeds, bars: spread (sd)"), fontsize=9)
    fig.tight_layout()
    return fig


def plot_ablation_ladder(ladder: Mapping[str, object], title: str | None = None) -> Figure:
    """Each rung of an ablation ladder beside the reference: its validation accuracy, every seed a dot, the mean
    and its spread (standard deviation over seeds) a bar, both written under the rung's name. The axis spans the
    rungs within `FAR` points of the reference; a rung further down is a red arrow at its left edge (its numbers
    stay in its label). Seconds are left to a table: runs timed one after another on a shared machine are not a
    fair race (`load_results("mnist")["timing"]` holds epochs timed side by side).

    Args:
        ladder: the `"ladder"` section of `vitsteps.train.load_results("mnist")`: `"epochs"`, and `"rungs"`, a dict
            from rung name (the first is the reference) to `{"val": {"mean", "sd", "values"}}`, accuracies in
            [0, 1].
        title: figure title; by default it states the epochs.
    """
    fix = 'pass load_results("mnist")["ladder"]'
    if not isinstance(ladder, Mapping) or not isinstance(ladder.get("rungs"), Mapping):
        _validate.fail(TypeError, "ladder", "a dict with 'rungs', a dict of rung name to its numbers", ladder, fix)
    rungs = dict(ladder["rungs"])
    if not rungs:
        _validate.fail(ValueError, "ladder['rungs']", "a non-empty dict of rung name to its numbers", rungs, fix)
    names = list(rungs)
    accuracy = [_summary_values(rungs[name].get("val") if isinstance(rungs[name], Mapping) else None,
                                f"ladder['rungs'][{name!r}]['val']") for name in names]
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(names) + 1.1))
    rows = np.arange(len(names))
    means = np.array([100 * np.mean(values) for values in accuracy])
    spreads = np.array([100 * np.std(values, ddof=1) if len(values) > 1 else 0.0 for values in accuracy])
    # the axis spans the rungs within FAR points of the reference; a rung further down gets an arrow at its edge
    near = [100 * v for mean, values in zip(means, accuracy, strict=True) if mean >= means[0] - FAR for v in values]
    floor = max(0.0, float(np.floor(min(near))) - 2)
    ax.axvline(means[0], color="0.6", linestyle="--", linewidth=1)
    for row, values in zip(rows, accuracy, strict=True):
        shown_values = [100 * v for v in values if 100 * v >= floor]
        ax.scatter(shown_values, [row] * len(shown_values), s=14, color="tab:blue", alpha=0.5, linewidths=0)
    inside = means >= floor
    ax.errorbar(means[inside], rows[inside], xerr=spreads[inside], fmt="o", color="tab:blue", markersize=5,
                capsize=3)
    for row in rows[~inside]:
        ax.plot([floor + 0.015 * (100 - floor)], [row], marker="<", color="tab:red", markersize=8)
    ax.set_xlim(floor, 100)
    labels = [f"{name}\n{mean:.1f} ± {spread:.1f}% ({len(values)} seed{'s' if len(values) > 1 else ''})"
              for name, mean, spread, values in zip(names, means, spreads, accuracy, strict=True)]
    ax.set_yticks(rows, labels, fontsize=SMALLEST_FONT)
    ax.invert_yaxis()
    ax.set_xlabel("validation accuracy (%)" + (" (red arrow: further left)" if (~inside).any() else ""))
    ax.grid(axis="x", alpha=0.3)
    epochs = ladder.get("epochs")
    ax.set_title(title or (f"the ablation ladder: {epochs} epochs per run; dashed line: the reference"
                           if isinstance(epochs, int) else "the ablation ladder; dashed line: the reference"),
                 fontsize=10)
    fig.tight_layout()
    return fig
