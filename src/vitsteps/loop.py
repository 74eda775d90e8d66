"""The training loop and evaluation: a seeded loop (AdamW, warm-up then cosine, label smoothing, shifts, mixup),
its `History`, predictions, accuracy and the confusion matrix.

    split = load_mnist_split()
    model, history = train_mnist(split, seed=0)      # the `mnist` preset with the `mnist` recipe
    evaluate(model, split.test_images, split.test_labels).accuracy

`train(model, data, recipe)` trains any classifier in place; `train_mnist` and `train_digits` build a preset from a
seed and train it with its recipe (`vitsteps.recipes`) in one call.

Shape legend: B batch, C channels, H W image, K classes.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import _validate
from .data import DigitsSplit, MnistSplit, load_digits_split, load_mnist_split, random_shift
from .model import ViT, ViTConfig, get_config
from .recipes import RECIPES, Recipe, _check_model, get_recipe, make_optimizer

# what the held-out entries of a History were called before they were named for what they hold
_OLD_HISTORY_NAMES = {"test_loss": "val_loss", "test_accuracy": "val_accuracy", "test_epoch": "val_epoch"}


@dataclass
class History:
    """What happened during training, one entry per epoch, and one held-out entry per evaluated epoch.

    The held-out images are validation images: they watch the training and take part in choosing it (a
    `MnistSplit`'s 500 validation images; a `DigitsSplit` has no third part, so its test half plays that role and
    `evaluated_on` says "test"). `val_epoch` lists the evaluated epochs when not every one was.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)      # mean smoothed loss over the epoch's steps
    train_accuracy: list[float] = field(default_factory=list)  # on the augmented batches (mixup: the larger share)
    val_loss: list[float] = field(default_factory=list)        # plain cross-entropy on the held-out images
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)              # learning rate at the epoch's last step
    seconds: float = 0.0                                       # wall time of the training steps
    eval_seconds: float = 0.0                                  # wall time of the evaluations
    val_epoch: list[int] = field(default_factory=list)         # the epochs evaluated, when not every one was
    evaluated_on: str = "validation"                           # what the held-out images are: "validation" or "test"

    @property
    def evaluated_epochs(self) -> list[int]:
        """The epoch of each `val_accuracy` entry."""
        return self.val_epoch or self.epoch[:len(self.val_accuracy)]

    def as_dict(self) -> dict[str, object]:
        """Plain lists and numbers, rounded to 6 decimals, for JSON."""
        return {key: [round(v, 6) for v in value] if isinstance(value, list) else
                round(value, 3) if isinstance(value, float) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, record: dict[str, object]) -> History:
        """A History from `as_dict()`'s output, e.g. a checkpoint's `metadata["history"]`; files written before the
        held-out fields were named `val_*` (`test_loss`, `test_accuracy`, `test_epoch`) load too."""
        _validate.instance(record, "record", dict, "a dict of History fields", "pass metadata['history']")
        renamed = {_OLD_HISTORY_NAMES.get(key, key): value for key, value in record.items()}
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(renamed) - known)
        if unknown:
            raise ValueError(f"record has entries {unknown} that a History does not have; its fields are "
                             f"{sorted(known)}.")
        return cls(**renamed)


class Evaluation(NamedTuple):
    """Mean cross-entropy, accuracy in [0, 1], and the predicted class of every image `[n]`."""

    loss: float
    accuracy: float
    predictions: torch.Tensor


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators."""
    _validate.non_negative_int(seed, "seed")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the one asked for, else CUDA if present, else Apple's MPS, else the CPU."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'cpu', 'cuda', 'mps' or None, got {device!r}; pass None to pick the "
                         f"best one present.") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA GPU; pass device='cpu' or None.")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but MPS is not available; pass device='cpu' or None.")
    return chosen


def _check_labelled(images: object, labels: object, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images `[n, C, H, W]` and one integer label each, named `{prefix}images` and `{prefix}labels`."""
    _validate.tensor(images, f"{prefix}images", 4, "[n, C, H, W]")
    _validate.labels(labels, f"{prefix}labels")
    if len(images) != len(labels):
        raise ValueError(f"{prefix}images has {len(images)} images but {prefix}labels has {len(labels)} labels; "
                         f"they must match one to one.")
    if len(images) == 0:
        raise ValueError(f"{prefix}images is empty; pass at least one image.")
    return images, labels.long()


def _split_data(data: object, val: object) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                    tuple[torch.Tensor, torch.Tensor] | None]:
    if isinstance(data, DigitsSplit):
        train_part = (data.train_images, data.train_labels)
        val = (data.test_images, data.test_labels) if val is None else val
    elif isinstance(data, MnistSplit):
        train_part = (data.train_images, data.train_labels)
        val = (data.val_images, data.val_labels) if val is None else val
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        train_part = tuple(data)
    else:
        _validate.fail(TypeError, "data", "a DigitsSplit, a MnistSplit or an (images [n, C, H, W], labels [n]) pair",
                       data, "use load_digits_split() or load_mnist_split()")
    train_part = _check_labelled(*train_part, "train_")
    if val is not None:
        if not (isinstance(val, (tuple, list)) and len(val) == 2):
            _validate.fail(TypeError, "val", "an (images, labels) pair or None", val,
                           "pass (split.val_images, split.val_labels), or split.part('val')")
        val = _check_labelled(*val, "val_")
    return train_part, val


def _check_classes(model: nn.Module, labels: torch.Tensor, name: str) -> None:
    config = getattr(model, "config", None)
    num_classes = getattr(config, "num_classes", None)
    if num_classes and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} go from {int(labels.min())} to {int(labels.max())} but the model has "
                         f"num_classes={num_classes}; labels must lie in 0..{num_classes - 1}.")


def _show_progress(progress: bool) -> bool:
    """Whether to draw a bar: asked for, and not switched off by the environment (`TQDM_DISABLE=1`).

    tqdm reads `TQDM_DISABLE` itself, except in its notebook bar (`tqdm.auto` in Jupyter), which always passes
    its own `disable`; so the variable is read here.
    """
    switched_off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return progress and not switched_off


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor at `step`: linear from ~0 to 1 over `warmup_steps`, then a cosine down to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(model: nn.Module, data: DigitsSplit | MnistSplit | tuple[torch.Tensor, torch.Tensor],
          recipe: Recipe | None = None, *, val: tuple[torch.Tensor, torch.Tensor] | None = None,
          eval_every: int = 1, on_epoch: Callable[[int, nn.Module], None] | None = None,
          device: str | torch.device | None = None, progress: bool = True, **overrides: object) -> History:
    """Train `model` in place with AdamW, a warm-up then cosine schedule, label smoothing, pixel shifts and mixup.

    Each step: shuffle, shift some images by a pixel (`max_shift`, `shift_prob`), blend each image with another
    of the batch (mixup, when `mixup_alpha > 0`: weight `w ~ Beta(a, a)`, loss `w CE(y) + (1 - w) CE(y')`),
    forward, smoothed cross-entropy, backward, AdamW step, schedule step.

    Args:
        model: a classifier mapping `[B, C, H, W]` images to `[B, K]` logits (a `ViT`).
        data: a `MnistSplit` (its validation images are evaluated), a `DigitsSplit` (it has no validation part: its
            test half is evaluated), or `(images [n, C, H, W], labels [n])`.
        recipe: the training settings; defaults to `RECIPES["mnist"]`.
        val: `(images, labels)` to evaluate during training; overrides a split's held-out images.
        eval_every: evaluate after every `eval_every`-th epoch and after the last one.
        on_epoch: called as `on_epoch(epoch, model)` after each epoch (and its evaluation), e.g. to keep a copy of
            the position table; the model is in train mode and must be left as it is.
        device: "cpu", "cuda", "mps", or None for the best one present.
        progress: show a `tqdm` progress bar (silent when the environment sets `TQDM_DISABLE=1`).
        **overrides: recipe fields to replace, e.g. `epochs=3`.

    Returns:
        The `History` of losses and accuracies per epoch. The model ends in eval mode on `device`.
    """
    _check_model(model)
    if recipe is None:
        recipe = RECIPES["mnist"]
    _validate.instance(recipe, "recipe", Recipe, "a Recipe or None", "use get_recipe('mnist')")
    recipe = _validate.replace_fields(recipe, overrides)
    _validate.flag(progress, "progress")
    _validate.positive_int(eval_every, "eval_every", "pass 1 to evaluate after every epoch")
    if on_epoch is not None and not callable(on_epoch):
        _validate.fail(TypeError, "on_epoch", "a function on_epoch(epoch, model) or None", on_epoch,
                       "pass the function itself")
    evaluated_on = "test" if isinstance(data, DigitsSplit) and val is None else "validation"
    (train_images, train_labels), val = _split_data(data, val)
    _check_classes(model, train_labels, "train_labels")
    if val is not None:
        _check_classes(model, val[1], "val_labels")
    target = pick_device(device)

    seed_everything(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    mix_rng = np.random.default_rng(recipe.seed)
    model.to(target)
    optimizer = make_optimizer(model, recipe)
    steps_per_epoch = math.ceil(len(train_images) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps, recipe.warmup_epochs * steps_per_epoch))
    history = History(evaluated_on=evaluated_on)
    bar = tqdm(range(1, recipe.epochs + 1), desc="training", unit="epoch", disable=not _show_progress(progress))
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_images), generator=generator)  # [n]
        loss_sum, correct = 0.0, 0
        for begin in range(0, len(order), recipe.batch_size):
            index = order[begin:begin + recipe.batch_size]  # [B]
            images = random_shift(train_images[index], recipe.max_shift, generator,
                                  recipe.shift_prob)  # [B, C, H, W]
            images, labels = images.to(target), train_labels[index].to(target)  # [B, C, H, W], [B]
            if recipe.mixup_alpha > 0:
                weight = float(mix_rng.beta(recipe.mixup_alpha, recipe.mixup_alpha))
                partner = torch.randperm(len(index), generator=generator).to(target)  # [B]
                images = weight * images + (1 - weight) * images[partner]  # [B, C, H, W]
            logits = model(images)  # [B, K]
            loss = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
            if recipe.mixup_alpha > 0:
                loss = weight * loss + (1 - weight) * F.cross_entropy(logits, labels[partner],
                                                                      label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(index)
            if recipe.mixup_alpha > 0 and weight < 0.5:
                labels = labels[partner]  # [B], the image that dominates the blend
            correct += int((logits.argmax(dim=1) == labels).sum())
        history.epoch.append(epoch)
        history.train_loss.append(loss_sum / len(order))
        history.train_accuracy.append(correct / len(order))
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.seconds += time.perf_counter() - start
        postfix = {"loss": f"{history.train_loss[-1]:.3f}", "acc": f"{history.train_accuracy[-1]:.3f}"}
        if val is not None and (epoch % eval_every == 0 or epoch == recipe.epochs):
            start = time.perf_counter()
            result = evaluate(model, *val, device=target)
            history.eval_seconds += time.perf_counter() - start
            history.val_loss.append(result.loss)
            history.val_accuracy.append(result.accuracy)
            if eval_every > 1:
                history.val_epoch.append(epoch)
            postfix[f"{evaluated_on[:4]}_acc"] = f"{result.accuracy:.3f}"
        if on_epoch is not None:
            on_epoch(epoch, model)
        bar.set_postfix(postfix)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Logits `[n, K]` for images `[n, C, H, W]`, in eval mode, batch by batch, returned on the CPU."""
    _check_model(model)
    _validate.tensor(images, "images", 4, "[n, C, H, W]")
    _validate.positive_int(batch_size, "batch_size")
    target = pick_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.to(target)
    logits = torch.cat([model(images[begin:begin + batch_size].to(target)).cpu()
                        for begin in range(0, len(images), batch_size)])  # [n, K]
    model.train(was_training)
    return logits


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512,
             device: str | torch.device | None = None) -> Evaluation:
    """Cross-entropy (no smoothing), accuracy and predictions of `model` on `images [n, C, H, W]`, `labels [n]`."""
    _check_model(model)
    images, labels = _check_labelled(images, labels, "")  # its parameters are images and labels
    _check_classes(model, labels, "labels")
    logits = predict(model, images, batch_size, device)  # [n, K]
    predictions = logits.argmax(dim=1)  # [n]
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (predictions == labels).float().mean().item()
    return Evaluation(loss, accuracy, predictions)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Counts `[K, K]`: row = true class, column = predicted class."""
    _validate.positive_int(num_classes, "num_classes")
    for name, value in (("labels", labels), ("predictions", predictions)):
        _validate.labels(value, name)
        if len(value) and (value.min() < 0 or value.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}; pass the right num_classes.")
    if len(labels) != len(predictions):
        raise ValueError(f"labels has {len(labels)} entries but predictions has {len(predictions)}; pass one "
                         f"prediction per label.")
    flat = labels.long() * num_classes + predictions.long()  # [n]
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)  # [K, K]


def train_digits(split: DigitsSplit | None = None, config: ViTConfig | None = None, recipe: Recipe | None = None,
                 *, device: str | torch.device | None = None, progress: bool = True,
                 **overrides: object) -> tuple[ViT, History]:
    """Build the `digits` ViT from a fixed seed and train it on a digits split: the whole recipe in one call.

    Args:
        split: defaults to `load_digits_split(seed=0)`.
        config: the model; defaults to the `digits` preset.
        recipe: defaults to `RECIPES["digits"]`; its seed also initialises the model.
        device: as in `train`.
        progress: show a progress bar.
        **overrides: recipe fields to replace.

    Returns:
        `(trained model in eval mode, History)`.
    """
    split = load_digits_split(0) if split is None else split
    config = get_config("digits") if config is None else config
    recipe = get_recipe("digits", **overrides) if recipe is None else dataclasses.replace(recipe, **overrides)
    _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('digits')")
    seed_everything(recipe.seed)
    model = ViT(config)
    history = train(model, split, recipe, device=device, progress=progress)
    return model, history


def train_mnist(split: MnistSplit | None = None, seed: int = 0, config: ViTConfig | None = None,
                recipe: Recipe | None = None, *, device: str | torch.device | None = None, progress: bool = True,
                **overrides: object) -> tuple[ViT, History]:
    """Build the `mnist` ViT from `seed` and train it on the MNIST split's 3,500 training images, evaluating the
    500 validation images every 5 epochs: the whole recipe of the shipped `mnist` checkpoints in one call.

    Args:
        split: defaults to `load_mnist_split()`.
        seed: initialises the model, and seeds the shuffling and the shifts.
        config: the model; defaults to the `mnist` preset.
        recipe: defaults to `RECIPES["mnist"]`.
        device: as in `train`.
        progress: show a progress bar.
        **overrides: recipe fields to replace, e.g. `epochs=10`.

    Returns:
        `(trained model in eval mode, History)`.
    """
    split = load_mnist_split() if split is None else split
    _validate.instance(split, "split", MnistSplit, "a MnistSplit", "use load_mnist_split()")
    config = get_config("mnist") if config is None else config
    _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('mnist')")
    _validate.non_negative_int(seed, "seed", "pass e.g. 0")
    recipe = RECIPES["mnist"] if recipe is None else recipe
    _validate.instance(recipe, "recipe", Recipe, "a Recipe or None", "use get_recipe('mnist')")
    recipe = _validate.replace_fields(recipe, {**overrides, "seed": seed})
    seed_everything(seed)
    model = ViT(config)
    history = train(model, split, recipe, eval_every=5, device=device, progress=progress)
    return model, history


