"""Weight parity with Hugging Face `transformers`: the same weights give the same logits and attention.

The reference models are built here from a random configuration (nothing is downloaded).
"""
from __future__ import annotations

import re
import sys

import pytest
import torch

from vitsteps import ViT, ViTConfig
from vitsteps.convert import HF_NAME_MAP, config_from_hf, from_hf_state_dict

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


# ------------------------------------------------------------------ bad input


def test_config_from_hf_refuses_the_tanh_gelu():
    with pytest.raises(ValueError, match="hidden_act='gelu_new'.*exact GELU"):
        config_from_hf(transformers.ViTConfig(**{**SMALL, "hidden_act": "gelu_new"}))


def test_config_from_hf_refuses_non_square_images():
    with pytest.raises(ValueError, match="image_size.*not square"):
        config_from_hf({"image_size": [32, 16], "patch_size": 8})


def test_config_from_hf_refuses_other_architectures():
    with pytest.raises(ValueError, match="'deit'"):
        config_from_hf({"model_type": "deit"})


def test_config_from_hf_refuses_a_non_config():
    with pytest.raises(TypeError, match="hf_config"):
        config_from_hf(42)


def test_from_hf_state_dict_refuses_a_non_mapping():
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        from_hf_state_dict([("classifier.weight", torch.zeros(2, 2))])


def test_from_hf_state_dict_refuses_an_empty_dict():
    with pytest.raises(ValueError, match="empty"):
        from_hf_state_dict({})


def test_from_hf_state_dict_refuses_a_non_tensor_value():
    with pytest.raises(TypeError, match="'classifier.weight' holds list"):
        from_hf_state_dict({"classifier.weight": [[0.0]]})


def test_from_hf_state_dict_refuses_a_wrong_config_type():
    with pytest.raises(TypeError, match="config must be a vitsteps ViTConfig"):
        from_hf_state_dict(hf_model(**SMALL).state_dict(), config=transformers.ViTConfig(**SMALL))


def test_from_hf_state_dict_names_an_unknown_tensor():
    state = dict(hf_model(**SMALL).state_dict())
    state["vit.encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="'vit.encoder.extra.weight'.*HF_NAME_MAP"):
        from_hf_state_dict(state)


def test_from_hf_state_dict_names_a_missing_value_projection():
    state = dict(hf_model(**SMALL).state_dict())
    del state["vit.layers.0.attention.v_proj.weight"]
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv.weight.*\['v_proj'\] are missing"):
        from_hf_state_dict(state)


def test_from_hf_state_dict_sends_timm_names_to_load_state_dict():
    with pytest.raises(ValueError, match="load it directly"):
        from_hf_state_dict(ViT(ViTConfig(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)).state_dict())


def test_from_hf_state_dict_says_when_the_config_has_the_wrong_number_of_classes():
    hf = hf_model(**SMALL)
    with pytest.raises(ValueError, match=r"head.weight has shape \(10, 24\).*\(5, 24\)"):
        from_hf_state_dict(hf.state_dict(), config_from_hf(hf.config, num_classes=5))


def test_from_hf_state_dict_says_when_the_checkpoint_has_no_classifier():
    torch.manual_seed(0)
    backbone = transformers.ViTModel(transformers.ViTConfig(**SMALL), add_pooling_layer=False)
    with pytest.raises(ValueError, match="no classifier: build the model with num_classes=0"):
        from_hf_state_dict(backbone.state_dict(), config_from_hf(backbone.config))
