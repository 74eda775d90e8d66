"""The deliberately buggy ViT of notebook 09: each bug is caught by its property, and without bugs it is ViT."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_all_refused, refusal_cases
from torch import nn

from vitsteps import ViT, get_config, image_to_patches
from vitsteps.encoder import Block
from vitsteps.teach.buggy import BUGS, BuggyBlock, BuggyViT, patchify_with_view
from vitsteps.teach.properties import run_checks

CONFIG = get_config("toy")  # the original article's model: 3x8x8 images, 4x4 patches, D=8, 8 heads, 6 layers


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def failing(model: nn.Module, images: torch.Tensor) -> set[str]:
    return {result.name for result in run_checks(model, images) if not result.passed}


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_alone_is_caught_by_its_properties(bug, images):
    torch.manual_seed(0)
    assert set(BUGS[bug].caught_by) <= failing(BuggyViT(CONFIG, bugs=[bug]), images)


def test_the_fixed_model_passes_every_check(images):
    torch.manual_seed(0)
    results = run_checks(BuggyViT(CONFIG, bugs=()), images)
    assert len(results) == 8 and all(results)


def test_fixing_the_bugs_in_order_turns_each_fix_green(images):
    remaining = set(BUGS)
    for bug in BUGS:
        torch.manual_seed(0)
        before = failing(BuggyViT(CONFIG, bugs=remaining), images)
        remaining.discard(bug)
        torch.manual_seed(0)
        after = failing(BuggyViT(CONFIG, bugs=remaining), images)
        turned_green = set(BUGS[bug].caught_by) & before - after
        assert turned_green, f"fixing {bug} turned none of {BUGS[bug].caught_by} green"
    assert after == set()


def test_fixing_the_forgotten_position_reveals_the_table_per_batch_slot(images):
    torch.manual_seed(0)
    hidden = failing(BuggyViT(CONFIG, bugs=["position_forgotten", "position_per_batch"]), images)
    torch.manual_seed(0)
    revealed = failing(BuggyViT(CONFIG, bugs=["position_per_batch"]), images)
    assert "batch_independence" not in hidden and "batch_independence" in revealed


def test_without_bugs_the_model_computes_what_vit_computes(images):
    torch.manual_seed(0)
    buggy = BuggyViT(CONFIG, bugs=()).eval()
    model = ViT(CONFIG).eval()
    state = dict(buggy.state_dict())
    P, C, D = CONFIG.patch_size, CONFIG.in_chans, CONFIG.embed_dim
    state["patch_embed.proj.weight"] = state.pop("patch_embed.weight").reshape(D, C, P, P)  # [D, C, P, P]
    state["patch_embed.proj.bias"] = state.pop("patch_embed.bias")
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert torch.allclose(buggy(images), model(images), atol=1e-6)


def test_the_batch_first_bug_is_what_torch_does_with_its_default_layout():
    torch.manual_seed(0)
    D, heads = 16, 4
    block = BuggyBlock(D, heads, mlp_ratio=2.0, norm_eps=1e-5, bugs=["batch_first", "post_norm"]).eval()
    layer = nn.TransformerEncoderLayer(D, heads, dim_feedforward=2 * D, dropout=0.0, activation="gelu").eval()
    layer.self_attn.in_proj_weight.data.copy_(block.attn.qkv.weight)
    layer.self_attn.in_proj_bias.data.copy_(block.attn.qkv.bias)
    for ours, theirs in [(block.attn.proj, layer.self_attn.out_proj), (block.mlp.fc1, layer.linear1),
                         (block.mlp.fc2, layer.linear2), (block.norm1, layer.norm1), (block.norm2, layer.norm2)]:
        theirs.load_state_dict(ours.state_dict())
    tokens = torch.randn(3, 5, D)  # [B, L, D], fed to a layer that expects [L, B, D]
    with torch.no_grad():
        assert torch.allclose(block(tokens), layer(tokens), atol=1e-5)


def test_a_block_without_bugs_is_the_package_block():
    torch.manual_seed(0)
    block = BuggyBlock(16, 4).eval()
    reference = Block(16, 4).eval()
    reference.load_state_dict(block.state_dict(), strict=True)
    tokens = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.equal(block(tokens), reference(tokens))


def test_the_view_bug_cuts_stripes_and_the_permute_fixes_it(images):
    assert torch.equal(patchify_with_view(images, 4, forget_permute=False), image_to_patches(images, 4))
    stripes = patchify_with_view(images, 4)
    assert torch.equal(stripes[0, 0], images[0, 0, :6].reshape(-1))  # 48 values: the first 6 rows of red


def test_every_bug_is_described_and_points_at_known_properties(images):
    torch.manual_seed(0)
    names = {result.name for result in run_checks(BuggyViT(CONFIG, bugs=()), images)}
    for bug in BUGS.values():
        assert bug.description and set(bug.caught_by) <= names


def test_the_buggy_model_starts_from_vits_initialisation():
    torch.manual_seed(0)
    buggy = BuggyViT(CONFIG, bugs=())
    torch.manual_seed(0)
    reference = ViT(CONFIG)
    assert torch.equal(buggy.pos_embed, reference.pos_embed) and torch.equal(buggy.cls_token, reference.cls_token)
    assert torch.equal(buggy.blocks[0].attn.qkv.bias, torch.zeros(3 * CONFIG.embed_dim))
    assert 0.01 < float(buggy.blocks[0].mlp.fc1.weight.detach().std()) < 0.03


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "BuggyViT: an unknown bug":
        (lambda: BuggyViT(CONFIG, bugs=["typo"]), ValueError, r"bugs must be one of 'patchify_view', .*got 'typo'"),
    "BuggyViT: a single bug name as a string":
        (lambda: BuggyViT(CONFIG, bugs="post_norm"), TypeError, r"pass \['post_norm'\]"),
    "BuggyViT: a config that is a dict":
        (lambda: BuggyViT({"img_size": 8}), TypeError, r"config must be a ViTConfig"),
    "BuggyViT: a batch size of 0":
        (lambda: BuggyViT(CONFIG, batch_size=0), ValueError, r"batch_size must be a positive int"),
    "BuggyViT: images without a batch dimension":
        (lambda: BuggyViT(CONFIG)(torch.rand(3, 8, 8)), ValueError, r"images must be a tensor with 4 dimensions"),
    "BuggyBlock: an unknown bug":
        (lambda: BuggyBlock(8, 2, bugs=["pre_norm"]), ValueError, r"bugs must be one of"),
    "patchify_with_view: a patch size that does not divide":
        (lambda: patchify_with_view(torch.rand(2, 3, 8, 8), 3), ValueError, r"patch_size=3 does not divide"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
