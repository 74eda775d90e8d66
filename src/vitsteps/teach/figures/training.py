"""Figures of notebook 07: images with captions, the learning-rate schedule, training curves, the confusion
matrix and the images a model got wrong.

Shape legend: n images, C channels, H W image, K classes.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ... import _validate
from ...train import History
from ._draw import as_image, grid_shape


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
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 0.3, 1.2 * rows + (0.4 if title else 0.1)),
                             squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < n:
            ax.imshow(as_image(images[index]), cmap="gray_r", interpolation="nearest")
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
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"peak {values.max():g} after {epochs[peak]:.0f} epochs, then a cosine down to 0",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_training_curves(history: object, baselines: dict[str, float] | None = None,
                         title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, train and test side by side, with optional baseline accuracies as lines.

    Args:
        history: a `vitsteps.train.History` (lists `epoch`, `train_loss`, `train_accuracy`, and optionally
            `test_loss`, `test_accuracy`).
        baselines: name to test accuracy in [0, 1], drawn as dashed horizontal lines, e.g. `{"SVC": 0.99}`.
        title: figure title.
    """
    _validate.instance(history, "history", History, "a vitsteps.train.History", "pass what train() returned")
    if not history.epoch:
        raise ValueError("history is empty, with no epoch; train for at least one epoch first.")
    epochs_run = len(history.epoch)
    names = ("train_loss", "train_accuracy") + (("test_loss", "test_accuracy")
                                                 if history.test_loss or history.test_accuracy else ())
    wrong = {name: len(getattr(history, name)) for name in names if len(getattr(history, name)) != epochs_run}
    if wrong:
        raise ValueError(f"history has {epochs_run} epochs but these lists have other lengths: {wrong}; "
                         f"pass what train() returned.")
    if baselines is not None:
        _validate.instance(baselines, "baselines", dict, "a dict of name to accuracy", "pass e.g. {'SVC': 0.99}")
    for name, accuracy in (baselines or {}).items():
        _validate.number_in(accuracy, f"baselines[{name!r}]", 0, 1, example="0.99 (an accuracy)")
    epochs = history.epoch
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(9.5, 3.2))
    loss_ax.plot(epochs, history.train_loss, label="train (smoothed labels, augmented)", color="tab:blue")
    accuracy_ax.plot(epochs, [100 * a for a in history.train_accuracy], label="train (augmented)",
                     color="tab:blue")
    if history.test_loss:
        loss_ax.plot(epochs, history.test_loss, label="test", color="tab:orange")
        accuracy_ax.plot(epochs, [100 * a for a in history.test_accuracy], label="test", color="tab:orange")
    for index, (name, accuracy) in enumerate((baselines or {}).items()):
        accuracy_ax.axhline(100 * accuracy, linestyle="--", linewidth=1, color=f"C{index + 2}",
                            label=f"{name} {100 * accuracy:.1f}%")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("loss", fontsize=10)
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_ylabel("accuracy (%)")
    accuracy_ax.set_title("accuracy", fontsize=10)
    low = min([100 * a for a in history.train_accuracy + history.test_accuracy][len(epochs) // 2:] or [0])
    accuracy_ax.set_ylim(max(0.0, min(low, 100 * min((baselines or {1: 1}).values())) - 3), 100.5)
    for ax in (loss_ax, accuracy_ax):
        ax.legend(fontsize=7)
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
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                    color="white" if row == col else "tab:red")
    ax.set_xticks(range(K), names, fontsize=8)
    ax.set_yticks(range(K), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct = int(np.trace(counts))
    ax.set_title(title or f"{correct} of {total} right ({100 * correct / max(total, 1):.1f}%); "
                 f"mistakes in red", fontsize=9)
    fig.tight_layout()
    return fig


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                       max_images: int = 16, title: str | None = None) -> Figure:
    """The images the model got wrong, each titled `true -> predicted`.

    Args:
        images: `[n, C, H, W]` images.
        labels: `[n]` true classes.
        predictions: `[n]` predicted classes.
        max_images: at most this many panels, in the order of `images`.
        title: figure title; by default it states how many were wrong.
    """
    _validate.tensor(images, "images", 4, "[n, C, H, W]")
    _validate.positive_int(max_images, "max_images")
    _validate.labels(labels, "labels", len(images))
    _validate.labels(predictions, "predictions", len(images))
    wrong = (labels != predictions).nonzero().flatten().tolist()
    shown = wrong[:max_images]
    rows, cols = grid_shape(max(len(shown), 1))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.3, 1.45 * rows + 0.5), squeeze=False)
    for panel, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if panel < len(shown):
            index = shown[panel]
            ax.imshow(as_image(images[index]), cmap="gray_r", interpolation="nearest")
            ax.set_title(f"{int(labels[index])} -> {int(predictions[index])}", fontsize=9, color="tab:red")
    if not shown:
        axes[0][0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title or f"{len(wrong)} of {len(images)} wrong (true -> predicted)"
                 + (f", first {len(shown)} shown" if len(wrong) > len(shown) else ""), fontsize=10)
    fig.tight_layout()
    return fig
