"""How to train, apart from the model: the `Recipe`, the recipes that made the shipped checkpoints, and which
parameters weight decay may touch.

    recipe = get_recipe("mnist", epochs=10)          # the shipped recipe, shortened
    optimizer = make_optimizer(model, recipe)        # AdamW over `parameter_groups(model, recipe.weight_decay)`

A `Recipe` holds everything about training that is not the model, the way `ViTConfig` holds the model's shapes.
`RECIPES["mnist"]` made the shipped `mnist` checkpoints; `RECIPES["digits"]` made the small `digits` checkpoint,
the quick run of `tests/benchmarks/bench_train.py`.

Weight decay follows timm's rule (`timm.optim.param_groups_weight_decay`), by parameter name: no decay for a
tensor of one dimension or none (LayerNorm and BatchNorm weights), for a name ending in `.bias`, or for a name the
model lists in its `no_weight_decay()` (`ViT.no_weight_decay()`: the position table and the CLS token).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import _validate


@dataclass(frozen=True)
class Recipe:
    """How to train: everything but the model. Defaults are a reasonable start for a small ViT."""

    epochs: int = 20              # passes over the training images
    batch_size: int = 64          # images per optimizer step
    lr: float = 1e-3              # peak learning rate of AdamW, reached after the warm-up
    weight_decay: float = 0.05    # AdamW's decoupled weight decay, on the parameters `parameter_groups` decays
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
    # The `mnist` preset on 3,500 training digits of 28x28: 80 epochs of 55 steps (4,400 steps). Chosen on the
    # validation images: a ViT this size needs many steps; shifts of up to 4 pixels give the border patches ink,
    # which is what lets the position table learn the whole 7x7 grid.
    "mnist": Recipe(epochs=80, batch_size=64, lr=2e-3, weight_decay=0.05, warmup_epochs=5, label_smoothing=0.1,
                    max_shift=4, shift_prob=1.0, mixup_alpha=0.0),
    # The `digits` preset on 1,437 training digits of 8x8: 150 epochs of 23 steps, about 40 s on one laptop core;
    # the quick run of tests/benchmarks/bench_train.py. Tuned on splits 0-4; mixup and the long schedule matter most.
    "digits": Recipe(epochs=150, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=5, label_smoothing=0.1,
                     max_shift=1, shift_prob=0.5, mixup_alpha=0.2),
}


def get_recipe(name: str = "mnist", **overrides: object) -> Recipe:
    """A recipe by name, with any field replaced, e.g. `get_recipe("mnist", epochs=5)`."""
    _validate.one_of(name, "name", sorted(RECIPES))
    return _validate.replace_fields(RECIPES[name], overrides)


def _check_model(model: object) -> nn.Module:
    return _validate.instance(model, "model", nn.Module, "a torch.nn.Module",
                              "build one with ViT(get_config('mnist'))")


def decays(name: str, parameter: torch.Tensor, exempt: set[str] | frozenset[str] = frozenset()) -> bool:
    """timm's rule for one trainable parameter: decayed unless it has at most one dimension, its name ends in
    `.bias`, or its name is in `exempt` (the model's `no_weight_decay()`)."""
    _validate.instance(name, "name", str, "a parameter name", "pass a name from model.named_parameters()")
    _validate.instance(parameter, "parameter", torch.Tensor, "a tensor", "pass a parameter of the model")
    return parameter.ndim > 1 and not name.endswith(".bias") and name not in exempt


def no_decay_names(model: nn.Module) -> set[str]:
    """The names a model exempts from weight decay: its `no_weight_decay()` (timm's hook), or none."""
    _check_model(model)
    hook = getattr(model, "no_weight_decay", None)
    return set(hook()) if callable(hook) else set()


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """The model's trainable parameters in two optimizer groups, split by `decays` (timm's rule).

    Args:
        model: any module; a `ViT` exempts its `pos_embed` and `cls_token` by name (`ViT.no_weight_decay()`).
        weight_decay: the decay of the first group; the second group has none.

    Returns:
        `[{"params": [...], "names": [...], "weight_decay": weight_decay}, {"params": [...], "names": [...],
        "weight_decay": 0.0}]`, each in the order of `model.named_parameters()`.
    """
    _check_model(model)
    _validate.number_in(weight_decay, "weight_decay", 0, example="0.05")
    exempt = no_decay_names(model)
    decayed = {"params": [], "names": [], "weight_decay": float(weight_decay)}
    kept = {"params": [], "names": [], "weight_decay": 0.0}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            group = decayed if decays(name, parameter, exempt) else kept
            group["params"].append(parameter)
            group["names"].append(name)
    return [decayed, kept]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.AdamW:
    """AdamW at the recipe's peak rate over `parameter_groups(model, recipe.weight_decay)`."""
    _check_model(model)
    _validate.instance(recipe, "recipe", Recipe, "a Recipe", "use get_recipe('mnist')")
    groups = [{"params": group["params"], "weight_decay": group["weight_decay"]}
              for group in parameter_groups(model, recipe.weight_decay)]
    try:  # the fused kernel (torch >= 2.4 on CPU, CUDA and MPS) does the same update in fewer operations
        return torch.optim.AdamW(groups, lr=recipe.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=recipe.lr)
