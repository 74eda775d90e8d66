"""vitsteps.convert: Hugging Face weights give the same logits and attention in `vitsteps.ViT`, a model moves to
another image size with its position table resampled, and bad input is named.

The reference models are built here from a random configuration (nothing is downloaded).
"""
from __future__ import annotations

import re
import sys

import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps import ViT, ViTConfig
from vitsteps.convert import HF_NAME_MAP, change_image_size, config_from_hf, from_hf_state_dict

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768, image_size=224,
            patch_size=16, num_labels=1000, qkv_bias=True, hidden_act="gelu", layer_norm_eps=1e-6)
# Hugging Face's own default layer_norm_eps (1e-12), no qkv bias, grayscale, 3 heads of 8.
SMALL = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=16,
             patch_size=4, num_channels=1, num_labels=10, qkv_bias=False, hidden_act="gelu")


def hf_model(seed: int = 0, **settings: object) -> torch.nn.Module:
    """A `ViTForImageClassification` with every parameter random (biases and LayerNorms included)."""
    torch.manual_seed(seed)
    config = transformers.ViTConfig(attn_implementation="eager", **settings)
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            is_norm_weight = "layernorm" in name and name.endswith("weight")
            parameter.copy_((1.0 if is_norm_weight else 0.0) + 0.05 * torch.randn_like(parameter))
    return model


def converted(hf: torch.nn.Module) -> ViT:
    config = config_from_hf(hf.config)
    model = ViT(config).eval()
    model.load_state_dict(from_hf_state_dict(hf.state_dict(), config), strict=True)
    return model


def legacy_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The names that transformers 4 wrote into checkpoint files (most files on the Hub)."""
    renames = [(r"\.layers\.(\d+)\.", r".encoder.layer.\1."), (r"attention\.q_proj", "attention.attention.query"),
               (r"attention\.k_proj", "attention.attention.key"), (r"attention\.v_proj", "attention.attention.value"),
               (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
               (r"mlp\.fc2", "output.dense")]
    renamed = {}
    for name, value in state_dict.items():
        for pattern, replacement in renames:
            name = re.sub(pattern, replacement, name)
        renamed[name] = value
    return renamed


def test_transformers_vit_imports_without_torchvision():
    from transformers import ViTForImageClassification  # noqa: F401

    assert "torchvision" not in sys.modules


def test_vit_tiny_gives_the_logits_and_attention_of_hugging_face():
    hf = hf_model(**TINY)
    model = converted(hf)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = hf(images, output_attentions=True)
    logits = model(images)
    attention = model.attention_maps(images)
    assert logits.shape == (2, 1000)
    assert reference.logits.abs().max() > 0.1  # the comparison is not between two near-zero tensors
    assert (logits - reference.logits).abs().max() <= 1e-5
    assert len(attention) == len(reference.attentions) == 12
    for ours, theirs in zip(attention, reference.attentions, strict=True):
        assert ours.shape == theirs.shape == (2, 3, 197, 197)
        assert (ours - theirs).abs().max() <= 1e-5


@pytest.mark.parametrize("names", ["transformers 5", "transformers 4 checkpoint"])
def test_small_model_with_hugging_face_defaults_gives_the_same_logits(names):
    hf = hf_model(seed=2, **SMALL)
    state_dict = hf.state_dict() if names == "transformers 5" else legacy_names(hf.state_dict())
    config = config_from_hf(hf.config)
    assert config.norm_eps == 1e-12 and config.qkv_bias is False and config.in_chans == 1
    model = ViT(config).eval()
    model.load_state_dict(from_hf_state_dict(state_dict, config), strict=True)
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = hf(images, output_attentions=True)
    assert (model(images) - reference.logits).abs().max() <= 1e-5
    for ours, theirs in zip(model.attention_maps(images), reference.attentions, strict=True):
        assert (ours - theirs).abs().max() <= 1e-5


def test_the_epsilon_matters_which_is_why_config_from_hf_carries_it():
    hf = hf_model(seed=4, **{**SMALL, "layer_norm_eps": 1e-2})
    model = converted(hf)
    wrong_eps = ViT(config_from_hf(hf.config, norm_eps=1e-6)).eval()
    wrong_eps.load_state_dict(model.state_dict())
    images = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = hf(images).logits
    assert (model(images) - reference).abs().max() <= 1e-5
    assert (wrong_eps(images) - reference).abs().max() > 1e-4


def test_query_key_and_value_are_stacked_in_that_order_into_qkv():
    hf = hf_model(**SMALL)
    state = hf.state_dict()
    ours = from_hf_state_dict(state)
    D = SMALL["hidden_size"]
    qkv = ours["blocks.1.attn.qkv.weight"]
    assert qkv.shape == (3 * D, D)
    assert torch.equal(qkv[:D], state["vit.layers.1.attention.q_proj.weight"])
    assert torch.equal(qkv[D:2 * D], state["vit.layers.1.attention.k_proj.weight"])
    assert torch.equal(qkv[2 * D:], state["vit.layers.1.attention.v_proj.weight"])
    assert torch.equal(ours["head.weight"], state["classifier.weight"])
    assert torch.equal(ours["pos_embed"], state["vit.embeddings.position_embeddings"])


def test_the_vit_prefix_is_optional_and_the_pooler_is_dropped():
    torch.manual_seed(0)
    config = transformers.ViTConfig(**{**SMALL, "num_labels": 0})
    backbone = transformers.ViTModel(config, add_pooling_layer=True)
    state = backbone.state_dict()
    assert "pooler.dense.weight" in state and not any(name.startswith("vit.") for name in state)
    ours = from_hf_state_dict(state, config_from_hf(config, num_classes=0))
    model = ViT(config_from_hf(config, num_classes=0))
    model.load_state_dict(ours, strict=True)
    images = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert (model.forward_features(images) - backbone(images).last_hidden_state).abs().max() <= 1e-5


def test_name_map_covers_every_hugging_face_parameter():
    hf = hf_model(**TINY)
    ours = from_hf_state_dict(hf.state_dict())
    assert set(ours) == set(ViT(config_from_hf(hf.config)).state_dict())
    assert HF_NAME_MAP["classifier"] == "head" and HF_NAME_MAP["layers.{i}.mlp.fc2"] == "blocks.{i}.mlp.fc2"


def test_config_from_hf_reads_a_config_json_dict():
    settings = {"model_type": "vit", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
                "intermediate_size": 256, "image_size": 32, "patch_size": 8, "num_channels": 3,
                "hidden_act": "gelu", "layer_norm_eps": 1e-12, "qkv_bias": True,
                "id2label": {str(i): f"class {i}" for i in range(7)}}
    config = config_from_hf(settings)
    assert config == ViTConfig(img_size=32, patch_size=8, in_chans=3, num_classes=7, embed_dim=64, depth=3,
                               num_heads=4, mlp_ratio=4.0, norm_eps=1e-12)


# ------------------------------------------------------------------ another image size

CONFIG = ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=4)


@pytest.fixture
def small_model() -> ViT:
    torch.manual_seed(0)
    return ViT(CONFIG).eval()


def test_a_model_built_for_8x8_runs_on_16x16_after_resampling(small_model):
    images = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="resample its position table"):
        small_model(images)
    resized = change_image_size(small_model, 16)
    assert resized.config.img_size == 16 and resized.config.grid_size == 8
    assert resized.pos_embed.shape == (1, 1 + 64, 32)
    logits = resized(images)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_resampling_keeps_the_cls_row_and_copies_every_other_weight(small_model):
    resized = change_image_size(small_model, 16)
    assert torch.equal(resized.pos_embed[0, 0], small_model.pos_embed[0, 0])
    ours, theirs = small_model.state_dict(), resized.state_dict()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours if name != "pos_embed")


def test_resampling_to_the_same_size_changes_nothing(small_model):
    images = torch.rand(3, 1, 8, 8)
    same = change_image_size(small_model, 8)
    assert torch.allclose(same.pos_embed, small_model.pos_embed, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(same(images), small_model(images), atol=1e-5)


def test_a_table_that_grows_along_the_columns_still_grows_after_upsampling(small_model):
    with torch.no_grad():
        columns = torch.arange(4.0).repeat(4)  # [N], the column index of each patch
        small_model.pos_embed[0, 1:] = columns[:, None]
    resized = change_image_size(small_model, 16)
    grid = resized.pos_embed[0, 1:, 0].reshape(8, 8)  # [rows, cols] of feature 0
    assert (grid[:, 1:] >= grid[:, :-1]).all()  # still increasing left to right
    assert torch.allclose(grid, grid[:1].expand(8, 8))  # and the same on every row


def test_a_sincos_model_gets_the_sincos_table_of_its_new_grid():
    torch.manual_seed(0)
    model = ViT(CONFIG, pos_embed="sincos")
    resized = change_image_size(model, 16)
    assert torch.equal(resized.pos_embed, ViT(CONFIG, pos_embed="sincos", img_size=16).pos_embed)


def test_the_resized_model_keeps_the_training_mode(small_model):
    assert not change_image_size(small_model, 16).training
    assert change_image_size(small_model.train(), 16).training


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------


def _state(**changes: object) -> dict[str, torch.Tensor]:
    state = dict(hf_model(**SMALL).state_dict())
    for name, value in changes.items():
        if value is None:
            del state[name]
        else:
            state[name] = value
    return state


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.ViTModel(transformers.ViTConfig(**SMALL), add_pooling_layer=False)


REFUSED = {
    "config_from_hf: the tanh GELU":
        (lambda: config_from_hf(transformers.ViTConfig(**{**SMALL, "hidden_act": "gelu_new"})), ValueError,
         r"hf_config has hidden_act='gelu_new', but vitsteps\.ViT uses exact GELU"),
    "config_from_hf: images that are not square":
        (lambda: config_from_hf({"image_size": [32, 16], "patch_size": 8}), ValueError,
         r"hf_config\.image_size=\[32, 16\] is not square"),
    "config_from_hf: another architecture":
        (lambda: config_from_hf({"model_type": "deit"}), ValueError, r"hf_config describes a 'deit' model, not 'vit'"),
    "config_from_hf: a number":
        (lambda: config_from_hf(42), TypeError, r"hf_config must be a transformers\.ViTConfig or a dict from "
                                                r"config\.json, got 42"),
    "from_hf_state_dict: a list of pairs":
        (lambda: from_hf_state_dict([("classifier.weight", torch.zeros(2, 2))]), TypeError,
         r"state_dict must be a mapping of names to tensors"),
    "from_hf_state_dict: an empty dict":
        (lambda: from_hf_state_dict({}), ValueError, r"state_dict is empty; pass the weights of a Hugging Face ViT"),
    "from_hf_state_dict: a value that is not a tensor":
        (lambda: from_hf_state_dict({"classifier.weight": [[0.0]]}), TypeError,
         r"state_dict\['classifier\.weight'\] must be a torch\.Tensor, got \[\[0\.0\]\] of type list"),
    "from_hf_state_dict: a Hugging Face config":
        (lambda: from_hf_state_dict(_state(), config=transformers.ViTConfig(**SMALL)), TypeError,
         r"config must be a vitsteps ViTConfig or None"),
    "from_hf_state_dict: an unknown tensor":
        (lambda: from_hf_state_dict(_state(**{"vit.encoder.extra.weight": torch.zeros(1)})), ValueError,
         r"'vit\.encoder\.extra\.weight'.*HF_NAME_MAP"),
    "from_hf_state_dict: a missing value projection":
        (lambda: from_hf_state_dict(_state(**{"vit.layers.0.attention.v_proj.weight": None})), ValueError,
         r"blocks\.0\.attn\.qkv\.weight.*\['v_proj'\] are missing"),
    "from_hf_state_dict: weights that already have timm names":
        (lambda: from_hf_state_dict(ViT(ViTConfig(img_size=8, patch_size=4, embed_dim=8, depth=1,
                                                  num_heads=2)).state_dict()), ValueError, r"load it directly"),
    "from_hf_state_dict: a config with another number of classes":
        (lambda: from_hf_state_dict(_state(), config_from_hf(transformers.ViTConfig(**SMALL), num_classes=5)),
         ValueError, r"head\.weight has shape \(10, 24\).*\(5, 24\)"),
    "from_hf_state_dict: a checkpoint without a classifier":
        (lambda: from_hf_state_dict(_backbone().state_dict(), config_from_hf(_backbone().config)), ValueError,
         r"no classifier: build the model with num_classes=0"),
    "change_image_size: a size the patches do not divide":
        (lambda: change_image_size(ViT(CONFIG), 15), ValueError, r"patch_size=2 does not divide"),
    "change_image_size: a size of 0":
        (lambda: change_image_size(ViT(CONFIG), 0), ValueError, r"img_size must be a positive int, got 0"),
    "change_image_size: another model type":
        (lambda: change_image_size(torch.nn.Linear(2, 2), 16), TypeError, r"model must be a vitsteps\.ViT"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
