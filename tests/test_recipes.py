"""vitsteps.recipes: weight decay chosen by parameter name as timm chooses it, the same groups as the shape rule
that trained the shipped models, and bad input named."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_all_refused, refusal_cases
from torch import nn

from vitsteps.ablation import ViTVariant
from vitsteps.baselines import SmallCNN
from vitsteps.model import ViT, ViTConfig, get_config
from vitsteps.recipes import RECIPES, decays, get_recipe, make_optimizer, no_decay_names, parameter_groups


def timm_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """timm's `param_groups_weight_decay(model, no_weight_decay_list=model.no_weight_decay())`, written out from
    its source (timm/optim/_param_groups.py) with names instead of tensors: skip what is frozen; no decay when
    `param.ndim <= 1 or name.endswith(".bias") or name in no_weight_decay_list`."""
    no_weight_decay_list = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or name in no_weight_decay_list:
            no_decay.append(name)
        else:
            decay.append(name)
    return decay, no_decay


def shape_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """The rule the shipped checkpoints were trained with: decay a tensor of two or more dimensions whose first
    dimension is not 1."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return ([name for name, p in trainable if p.dim() >= 2 and p.shape[0] != 1],
            [name for name, p in trainable if not (p.dim() >= 2 and p.shape[0] != 1)])


def names(model: nn.Module) -> tuple[list[str], list[str]]:
    decayed, kept = parameter_groups(model, 0.05)
    return decayed["names"], kept["names"]


SHIPPED = {
    "mnist": lambda: ViT(get_config("mnist")),
    "digits": lambda: ViT(get_config("digits")),
    "cnn": lambda: SmallCNN(),
    "no position table": lambda: ViTVariant(get_config("mnist"), position="none"),
    "mean pooling": lambda: ViTVariant(get_config("mnist"), pooling="mean"),
    "post-norm": lambda: ViTVariant(get_config("mnist"), norm="post"),
    "sin-cos": lambda: ViT(get_config("mnist", pos_embed="sincos", pos_embed_init="trunc_normal")),
    "patch 7": lambda: ViT(get_config("mnist", patch_size=7)),
}


@pytest.mark.parametrize("build", SHIPPED.values(), ids=SHIPPED.keys())
def test_decay_by_name_is_timms_split_and_the_shape_rule_the_shipped_runs_used(build) -> None:
    model = build()
    assert names(model) == timm_groups(model) == shape_groups(model)


def test_a_vit_decays_its_matrices_and_nothing_else() -> None:
    model = ViT(get_config("mnist", depth=1))
    decayed, kept = names(model)
    assert decayed == ["patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                       "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "head.weight"]
    assert {"cls_token", "pos_embed", "norm.weight", "blocks.0.norm1.weight", "head.bias"} <= set(kept)
    assert set(decayed) | set(kept) == {name for name, _ in model.named_parameters()}
    assert no_decay_names(model) == {"pos_embed", "cls_token", "dist_token"} == model.no_weight_decay()


def test_the_name_rule_and_the_shape_rule_part_where_only_a_name_can_tell() -> None:
    model = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=1, embed_dim=8, depth=1, num_heads=2))
    assert "head.weight" in names(model)[0] == timm_groups(model)[0]  # [1, D]: a matrix, decayed by name
    assert "head.weight" in shape_groups(model)[1]  # the shape rule took its first dimension of 1 for a token
    assert not decays("blocks.0.attn.qkv.bias", torch.zeros(3, 3)) and decays("qkv.weight", torch.zeros(3, 3))
    assert not decays("cls_token", torch.zeros(1, 1, 8), {"cls_token"}) and decays("cls_token", torch.zeros(1, 1, 8))


def test_frozen_parameters_are_in_no_group_and_the_optimizer_uses_both_groups() -> None:
    model = ViT(get_config("mnist", depth=1))
    model.head.weight.requires_grad_(False)
    decayed, kept = parameter_groups(model, 0.05)
    assert "head.weight" not in decayed["names"] + kept["names"]
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.05, 0.0)
    optimizer = make_optimizer(model, RECIPES["mnist"])
    assert [len(group["params"]) for group in optimizer.param_groups] == [len(decayed["params"]), len(kept["params"])]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]


def test_adamw_shrinks_a_decayed_weight_and_leaves_the_position_table_alone() -> None:
    model = ViT(get_config("mnist", depth=1))
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # no gradient: only the decay moves anything
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    make_optimizer(model, get_recipe("mnist", lr=0.1, weight_decay=0.5)).step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["head.weight"], before["head.weight"] * (1 - 0.1 * 0.5))
    for name in ("pos_embed", "cls_token", "norm.weight", "head.bias"):
        assert torch.equal(after[name], before[name]), name


REFUSED = {
    "parameter_groups: a model that is a name":
        (lambda: parameter_groups("vit", 0.05), TypeError, r"model must be a torch\.nn\.Module, got 'vit'"),
    "parameter_groups: a negative decay":
        (lambda: parameter_groups(nn.Linear(2, 2), -0.1), ValueError, r"weight_decay must be a number >= 0"),
    "no_decay_names: a model that is a dict":
        (lambda: no_decay_names({}), TypeError, r"model must be a torch\.nn\.Module, got \{\}"),
    "make_optimizer: a recipe that is a dict":
        (lambda: make_optimizer(nn.Linear(2, 2), {"lr": 1e-3}), TypeError, r"recipe must be a Recipe"),
    "decays: a name that is a number":
        (lambda: decays(3, torch.zeros(2, 2)), TypeError, r"name must be a parameter name, got 3"),
    "decays: a parameter that is a list":
        (lambda: decays("head.weight", [[1.0]]), TypeError, r"parameter must be a tensor, got \[\[1\.0\]\]"),
    "get_recipe: an unknown name":
        (lambda: get_recipe("imagenet"), ValueError, r"name must be one of 'digits', 'mnist', got 'imagenet'"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
