"""Training, in one import: the names of the four modules that train a ViT and keep what it learned.

    from vitsteps.train import RECIPES, load_pretrained, train, train_mnist

| module                | its one job                                                                          |
|-----------------------|--------------------------------------------------------------------------------------|
| `vitsteps.recipes`    | `Recipe`, `RECIPES`, `get_recipe`; the parameters weight decay touches; AdamW        |
| `vitsteps.loop`       | `train`, `train_mnist`, `train_digits`, `History`; `predict`, `evaluate`, confusions |
| `vitsteps.checkpoint` | `save_checkpoint`, `load_checkpoint`, the shipped checkpoints (`load_pretrained`)    |
| `vitsteps.results`    | the shipped measurements: `load_results`, `load_position_tables`                     |

The baselines the ViT is measured against (a CNN, an SVC, logistic regression) are `vitsteps.baselines`.
"""
from __future__ import annotations

from .checkpoint import (
    CHECKPOINT_DIR,
    load_checkpoint,
    load_pretrained,
    pretrained_path,
    save_checkpoint,
    shipped_checkpoints,
)
from .loop import (
    Evaluation,
    History,
    confusion_matrix,
    evaluate,
    pick_device,
    predict,
    seed_everything,
    train,
    train_digits,
    train_mnist,
    warmup_cosine,
)
from .recipes import RECIPES, Recipe, get_recipe, make_optimizer, parameter_groups
from .results import load_position_tables, load_results

__all__ = [
    "CHECKPOINT_DIR", "RECIPES", "Evaluation", "History", "Recipe", "confusion_matrix", "evaluate", "get_recipe",
    "load_checkpoint", "load_position_tables", "load_pretrained", "load_results", "make_optimizer",
    "parameter_groups", "pick_device", "predict", "pretrained_path", "save_checkpoint", "seed_everything",
    "shipped_checkpoints", "train", "train_digits", "train_mnist", "warmup_cosine",
]
