"""Training: a seeded loop (AdamW, warm-up then cosine, label smoothing, shifts, mixup), evaluation, baselines,
checkpoints, and the measured results shipped with the package.

    split = load_digits_split(seed=0)
    model, history = train_digits(split)             # the `digits` preset with the `digits` recipe
    evaluate(model, split.test_images, split.test_labels).accuracy

    split = load_mnist_split()
    model, history = train_mnist(split, seed=0)      # the `mnist` preset with the `mnist` recipe

A `Recipe` holds everything about training that is not the model, the way `ViTConfig` holds the model's
shapes; `RECIPES["digits"]` and `RECIPES["mnist"]` made the shipped checkpoints. A checkpoint is two files side by
side: `name.pt` (the state dict) and `name.json` (the `ViTConfig` and how it was trained). `load_results("mnist")`
reads the measurements shipped beside them (`tools/mnist_results.py` made them).

Shape legend: B batch, C channels, H W image, K classes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import _validate
from .data import DigitsSplit, MnistSplit, load_digits_split, load_mnist_split, random_shift
from .model import ViT, ViTConfig, get_config

CHECKPOINT_DIR = "checkpoints"  # inside the vitsteps package


@dataclass(frozen=True)
class Recipe:
    """How to train: everything but the model. Defaults are a reasonable start for a small ViT."""

    epochs: int = 20              # passes over the training images
    batch_size: int = 64          # images per optimizer step
    lr: float = 1e-3              # peak learning rate of AdamW, reached after the warm-up
    weight_decay: float = 0.05    # AdamW's decoupled weight decay
    warmup_epochs: int = 2        # epochs of linear warm-up from 0 to `lr`; then a cosine decay to 0
    label_smoothing: float = 0.1  # share of the target probability spread over all classes
    max_shift: int = 1            # augmentation: random shifts of up to this many pixels (0: none)
    shift_prob: float = 1.0       # chance that a training image is shifted at all
    mixup_alpha: float = 0.0      # mixup: blend pairs of images and their labels, weight ~ Beta(a, a) (0: off)
    seed: int = 0                 # shuffling, augmentation and dropout

    def __post_init__(self) -> None:
        _validate.positive_int(self.epochs, "epochs")
        _validate.positive_int(self.batch_size, "batch_size")
        _validate.positive_number(self.lr, "lr", "1e-3")
        _validate.number_in(self.weight_decay, "weight_decay", 0, example="0.05")
        _validate.non_negative_int(self.warmup_epochs, "warmup_epochs")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} leaves no epoch for the cosine decay with "
                             f"epochs={self.epochs}; pass warmup_epochs < epochs, e.g. 2.")
        _validate.number_in(self.label_smoothing, "label_smoothing", 0, 1, high_open=True, example="0.1")
        _validate.non_negative_int(self.max_shift, "max_shift")
        _validate.number_in(self.shift_prob, "shift_prob", 0, 1, example="0.5")
        _validate.non_negative_int(self.seed, "seed")
        _validate.number_in(self.mixup_alpha, "mixup_alpha", 0, example="0.2")


RECIPES: dict[str, Recipe] = {
    # The `digits` preset on 1,437 training digits: 150 epochs of 23 steps, about 40 s on one laptop core.
    # Tuned on splits 0-4 (tests/benchmarks/bench_train.py); mixup and the long schedule matter most.
    "digits": Recipe(epochs=150, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=5, label_smoothing=0.1,
                     max_shift=1, shift_prob=0.5, mixup_alpha=0.2),
    # The `mnist` preset on 3,500 training digits of 28x28: 80 epochs of 55 steps (4,400 steps). Chosen on the
    # validation images: a ViT this size needs many steps; shifts of up to 4 pixels give the border patches ink,
    # which is what lets the position table learn the whole 7x7 grid.
    "mnist": Recipe(epochs=80, batch_size=64, lr=2e-3, weight_decay=0.05, warmup_epochs=5, label_smoothing=0.1,
                    max_shift=4, shift_prob=1.0, mixup_alpha=0.0),
}


def get_recipe(name: str = "digits", **overrides: object) -> Recipe:
    """A recipe by name, with any field replaced, e.g. `get_recipe("digits", epochs=5)`."""
    _validate.one_of(name, "name", sorted(RECIPES))
    return _validate.replace_fields(RECIPES[name], overrides)


@dataclass
class History:
    """What happened during training, one entry per epoch (test entries only when a test set was given, one per
    evaluated epoch: `test_epoch`, empty when every epoch was evaluated)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)      # mean smoothed loss over the epoch's steps
    train_accuracy: list[float] = field(default_factory=list)  # on the augmented batches (mixup: the larger share)
    test_loss: list[float] = field(default_factory=list)       # plain cross-entropy on the held-out images
    test_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)              # learning rate at the epoch's last step
    seconds: float = 0.0                                       # wall time of the training steps
    eval_seconds: float = 0.0                                  # wall time of the evaluations
    test_epoch: list[int] = field(default_factory=list)        # the epochs evaluated, when not every one was
    evaluated_on: str = "test"                                 # what the held-out images are: "test" or "validation"

    @property
    def evaluated_epochs(self) -> list[int]:
        """The epoch of each `test_accuracy` entry."""
        return self.test_epoch or self.epoch[:len(self.test_accuracy)]

    def as_dict(self) -> dict[str, object]:
        """Plain lists and numbers, rounded to 6 decimals, for JSON."""
        return {key: [round(v, 6) for v in value] if isinstance(value, list) else
                round(value, 3) if isinstance(value, float) else value
                for key, value in dataclasses.asdict(self).items()}


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


def _check_model(model: object) -> nn.Module:
    return _validate.instance(model, "model", nn.Module, "a torch.nn.Module",
                              "build one with ViT(get_config('digits'))")


def _check_labelled(images: object, labels: object, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    _validate.tensor(images, f"{name}_images", 4, "[n, C, H, W]")
    _validate.labels(labels, f"{name}_labels")
    if len(images) != len(labels):
        raise ValueError(f"{name}_images has {len(images)} images but {name}_labels has {len(labels)} labels; "
                         f"they must match one to one.")
    if len(images) == 0:
        raise ValueError(f"{name}_images is empty; pass at least one image.")
    return images, labels.long()


def _split_data(data: object, test: object) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                     tuple[torch.Tensor, torch.Tensor] | None]:
    if isinstance(data, DigitsSplit):
        train_part = (data.train_images, data.train_labels)
        test = (data.test_images, data.test_labels) if test is None else test
    elif isinstance(data, MnistSplit):
        train_part = (data.train_images, data.train_labels)
        test = (data.val_images, data.val_labels) if test is None else test
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        train_part = tuple(data)
    else:
        _validate.fail(TypeError, "data", "a DigitsSplit, a MnistSplit or an (images [n, C, H, W], labels [n]) pair",
                       data, "use load_digits_split() or load_mnist_split()")
    train_part = _check_labelled(*train_part, "train")
    if test is not None:
        if not (isinstance(test, (tuple, list)) and len(test) == 2):
            _validate.fail(TypeError, "test", "an (images, labels) pair or None", test,
                           "pass (split.test_images, split.test_labels)")
        test = _check_labelled(*test, "test")
    return train_part, test


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


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms, CLS or position tokens)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2 and p.shape[0] != 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and not (p.dim() >= 2 and p.shape[0] != 1)]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel (torch >= 2.4 on CPU, CUDA and MPS) does the same update in fewer operations
        return torch.optim.AdamW(groups, lr=recipe.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=recipe.lr)


def train(model: nn.Module, data: DigitsSplit | MnistSplit | tuple[torch.Tensor, torch.Tensor],
          recipe: Recipe | None = None, *, test: tuple[torch.Tensor, torch.Tensor] | None = None,
          eval_every: int = 1, on_epoch: Callable[[int, nn.Module], None] | None = None,
          device: str | torch.device | None = None, progress: bool = True, **overrides: object) -> History:
    """Train `model` in place with AdamW, a warm-up then cosine schedule, label smoothing, pixel shifts and mixup.

    Each step: shuffle, shift some images by a pixel (`max_shift`, `shift_prob`), blend each image with another
    of the batch (mixup, when `mixup_alpha > 0`: weight `w ~ Beta(a, a)`, loss `w CE(y) + (1 - w) CE(y')`),
    forward, smoothed cross-entropy, backward, AdamW step, schedule step.

    Args:
        model: a classifier mapping `[B, C, H, W]` images to `[B, K]` logits (a `ViT`).
        data: a `DigitsSplit` (its test half is evaluated), a `MnistSplit` (its validation images are evaluated),
            or `(images [n, C, H, W], labels [n])`.
        recipe: the training settings; defaults to `RECIPES["digits"]`.
        test: `(images, labels)` to evaluate; overrides a split's held-out images.
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
        recipe = RECIPES["digits"]
    _validate.instance(recipe, "recipe", Recipe, "a Recipe or None", "use get_recipe('digits')")
    recipe = _validate.replace_fields(recipe, overrides)
    _validate.flag(progress, "progress")
    _validate.positive_int(eval_every, "eval_every", "pass 1 to evaluate after every epoch")
    if on_epoch is not None and not callable(on_epoch):
        _validate.fail(TypeError, "on_epoch", "a function on_epoch(epoch, model) or None", on_epoch,
                       "pass the function itself")
    evaluated_on = "validation" if isinstance(data, MnistSplit) and test is None else "test"
    (train_images, train_labels), test = _split_data(data, test)
    _check_classes(model, train_labels, "train_labels")
    if test is not None:
        _check_classes(model, test[1], "test_labels")
    target = pick_device(device)

    seed_everything(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    mix_rng = np.random.default_rng(recipe.seed)
    model.to(target)
    optimizer = _make_optimizer(model, recipe)
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
        if test is not None and (epoch % eval_every == 0 or epoch == recipe.epochs):
            start = time.perf_counter()
            result = evaluate(model, *test, device=target)
            history.eval_seconds += time.perf_counter() - start
            history.test_loss.append(result.loss)
            history.test_accuracy.append(result.accuracy)
            if eval_every > 1:
                history.test_epoch.append(epoch)
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
    images, labels = _check_labelled(images, labels, "test")
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


def fit_baseline(split: DigitsSplit, name: str = "svc") -> float:
    """Test accuracy of a classic scikit-learn classifier on the flattened pixels of the same split.

    `"svc"`: an RBF support-vector machine, C=10, gamma=0.001 on the 0..16 pixel scale (0.256 on our [0, 1]
    scale: the same model). `"logistic"`: multinomial logistic regression.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    _validate.instance(split, "split", DigitsSplit, "a DigitsSplit", "use load_digits_split()")
    models = {"svc": lambda: SVC(kernel="rbf", C=10.0, gamma=0.001 * 16 ** 2),
              "logistic": lambda: LogisticRegression(C=1.0, max_iter=5000)}
    _validate.one_of(name, "name", sorted(models))
    train_x = split.train_images.reshape(len(split.train_images), -1).numpy()  # [n_train, H*W]
    test_x = split.test_images.reshape(len(split.test_images), -1).numpy()  # [n_test, H*W]
    classifier = models[name]().fit(train_x, split.train_labels.numpy())
    return float(classifier.score(test_x, split.test_labels.numpy()))


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


def _checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    _validate.instance(path, "path", (str, Path), "a str or Path", "pass e.g. 'checkpoints/digits'")
    base = Path(path)
    if base.suffix in (".pt", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".pt"), base.with_suffix(".json")


def save_checkpoint(model: ViT, path: str | Path, metadata: dict[str, object] | None = None,
                    half: bool = False) -> tuple[Path, Path]:
    """Write `path.pt` (the state dict, on the CPU) and `path.json` (the config and `metadata`).

    Args:
        model: the ViT to save.
        path: where, without suffix (or with `.pt` / `.json`).
        metadata: anything JSON can hold, e.g. how the model was trained.
        half: store floating-point tensors as float16: half the file; `load_checkpoint` reads them back into the
            model's float32 parameters (each weight rounded to about 3 significant digits).

    Returns:
        The two paths written.
    """
    _validate.instance(model, "model", ViT, "a vitsteps ViT (its config is saved beside the weights)",
                       "build it with ViT(config)")
    if metadata is not None:
        _validate.instance(metadata, "metadata", dict, "a dict or None", "pass e.g. {'epochs': 150}")
    _validate.flag(half, "half")
    weights_path, config_path = _checkpoint_files(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    if half:
        state = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    torch.save(state, weights_path)
    record = {"config": dataclasses.asdict(model.config), "metadata": metadata or {}}
    config_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return weights_path, config_path


def _fields_of_state(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """The ViTConfig fields a timm-named state dict reveals by its shapes (those it holds)."""
    fields: dict[str, int] = {}
    kernel = state.get("patch_embed.proj.weight")
    if kernel is not None and kernel.dim() == 4:
        fields.update(embed_dim=kernel.shape[0], in_chans=kernel.shape[1], patch_size=kernel.shape[-1])
    blocks = {name.split(".")[1] for name in state if name.startswith("blocks.")}
    if blocks:
        fields["depth"] = len(blocks)
    head = state.get("head.weight")
    if head is not None and head.dim() == 2:
        fields["num_classes"] = head.shape[0]
    return fields


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ViT, dict[str, object]]:
    """Rebuild a ViT from `path.json` and fill it with `path.pt`; the model is returned in eval mode.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the JSON does not describe a ViTConfig, or the weights do not fit the model it describes.

    Returns:
        `(model, metadata)`.
    """
    weights_path, config_path = _checkpoint_files(path)
    for file in (config_path, weights_path):
        if not file.is_file():
            raise FileNotFoundError(f"no checkpoint file at {file}; a checkpoint is a .pt and a .json side by side.")
    record = json.loads(config_path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{config_path.name} must hold an object with a 'config' entry (the ViTConfig fields); "
                         f"write it with save_checkpoint.")
    try:
        config = ViTConfig(**record["config"])
    except TypeError as error:
        raise ValueError(f"{config_path.name} does not describe a ViTConfig ({error}); write it with "
                         f"save_checkpoint.") from error
    model = ViT(config)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file or a pickled object that is not a state dict
        raise ValueError(f"{weights_path.name} is not a readable state dict ({type(error).__name__}); "
                         f"write it with save_checkpoint.") from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{weights_path.name} must hold a state dict (parameter name to tensor); "
                         f"write it with save_checkpoint.")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{name} {tuple(state[name].shape)} vs {tuple(expected[name].shape)}"
             for name in sorted(set(expected) & set(state)) if state[name].shape != expected[name].shape]
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            f"missing {missing[:4]}" if missing else "", f"unexpected {unexpected[:4]}" if unexpected else "",
            f"shape (file vs config) {wrong[:4]}" if wrong else "") if part)
        made_for = _fields_of_state(state)
        differ = {name: value for name, value in made_for.items() if getattr(config, name) != value}
        hint = (f" (the weights were made for {', '.join(f'{k}={v}' for k, v in differ.items())}, the config says "
                f"{', '.join(f'{k}={getattr(config, k)}' for k in differ)})" if differ else "")
        raise ValueError(f"{weights_path.name} does not match the config in {config_path.name}: {details}{hint}; "
                         f"save the weights and the config together with save_checkpoint.")
    model.load_state_dict(state)
    model.to(pick_device(device)).eval()
    return model, record.get("metadata", {})


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints shipped inside the package (a `.pt` and a `.json` side by side), e.g. `"mnist"`."""
    folder = resources.files("vitsteps") / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    files = {Path(str(p)).name for p in folder.iterdir()}
    return sorted(name[:-3] for name in files if name.endswith(".pt") and f"{name[:-3]}.json" in files)


def pretrained_path(name: str = "digits") -> Path:
    """Path (without suffix) of a checkpoint shipped inside the package."""
    available = shipped_checkpoints()
    _validate.one_of(name, "name", available, f"the shipped checkpoints are {available}")
    return Path(str(resources.files("vitsteps") / CHECKPOINT_DIR / name))


def load_pretrained(name: str = "digits") -> tuple[ViT, dict[str, object]]:
    """The checkpoint shipped with the package, e.g. the trained `digits` or `mnist` model: `(model, metadata)`."""
    return load_checkpoint(pretrained_path(name))


RESULTS = {"mnist": "mnist_results.json"}  # measurements shipped with the package, by name


def load_results(name: str = "mnist") -> dict[str, object]:
    """The measurements shipped with the package: for `"mnist"`, what `tools/mnist_results.py` measured (the
    `mnist` ViT, the CNN and the SVC on the MNIST split, the training-set-size sweep, the ablation ladder, the
    Fig. 7 numbers, the seconds and the machine's load), as a dict of plain JSON values."""
    _validate.one_of(name, "name", sorted(RESULTS))
    path = resources.files("vitsteps") / CHECKPOINT_DIR / RESULTS[name]
    if not path.is_file():
        raise FileNotFoundError(f"the package holds no {RESULTS[name]}; run `make results` in the repository to "
                                f"measure it.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_position_tables(name: str = "mnist") -> dict[str, object]:
    """The position tables of the shipped `mnist` runs, stored every few epochs during training:
    `{"epochs": [E] ints, "images_seen": [E] ints, "tables": {seed: [E, N, D] float32 tensor}}` (patch rows only,
    no CLS row), the curve of the paper's Fig. 7 centre against training."""
    _validate.one_of(name, "name", sorted(RESULTS))
    path = resources.files("vitsteps") / CHECKPOINT_DIR / f"{name}_position_tables.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the package holds no {name}_position_tables.pt; run `make results` in the "
                                f"repository to measure it.")
    with resources.as_file(path) as file:
        record = torch.load(file, map_location="cpu", weights_only=True)
    record["tables"] = {int(seed): table.float() for seed, table in record["tables"].items()}  # [E, N, D] each
    return record
