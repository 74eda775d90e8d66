"""Load Hugging Face ViT weights into `vitsteps.ViT`, and move a ViT to another image size.

`vitsteps.ViT` uses timm's parameter names, so a timm checkpoint loads directly with
`model.load_state_dict(state_dict)`. Hugging Face `transformers` names the same tensors differently and keeps
the query, key and value projections apart; `from_hf_state_dict` renames them through the table below and
stacks `q`, `k`, `v` into our fused `qkv`.

| Hugging Face (transformers 5)            | checkpoint files of transformers 4          | vitsteps / timm             |
|------------------------------------------|---------------------------------------------|-----------------------------|
| `embeddings.cls_token`                   | same                                        | `cls_token`                 |
| `embeddings.position_embeddings`         | same                                        | `pos_embed`                 |
| `embeddings.patch_embeddings.projection` | same                                        | `patch_embed.proj`          |
| `layers.i.layernorm_before`              | `encoder.layer.i.layernorm_before`          | `blocks.i.norm1`            |
| `layers.i.attention.q_proj`              | `encoder.layer.i.attention.attention.query` | `blocks.i.attn.qkv` [0:D]   |
| `layers.i.attention.k_proj`              | `encoder.layer.i.attention.attention.key`   | `blocks.i.attn.qkv` [D:2D]  |
| `layers.i.attention.v_proj`              | `encoder.layer.i.attention.attention.value` | `blocks.i.attn.qkv` [2D:3D] |
| `layers.i.attention.o_proj`              | `encoder.layer.i.attention.output.dense`    | `blocks.i.attn.proj`        |
| `layers.i.layernorm_after`               | `encoder.layer.i.layernorm_after`           | `blocks.i.norm2`            |
| `layers.i.mlp.fc1`                       | `encoder.layer.i.intermediate.dense`        | `blocks.i.mlp.fc1`          |
| `layers.i.mlp.fc2`                       | `encoder.layer.i.output.dense`              | `blocks.i.mlp.fc2`          |
| `layernorm`                              | same                                        | `norm`                      |
| `classifier`                             | same                                        | `head`                      |

In a `ViTForImageClassification` every name but `classifier` starts with `vit.`; the prefix is optional here (a
bare `ViTModel` saves without it). `pooler.dense` (the tanh layer of `ViTModel`'s pooled output) and the
masked-image-modelling `embeddings.mask_token` have no counterpart in a ViT classifier and are dropped.

Two settings must agree for equal numbers: Hugging Face's `layer_norm_eps` defaults to 1e-12 where ours is 1e-6,
and `hidden_act` must be `"gelu"` (exact GELU). `config_from_hf` carries both over.

A real checkpoint, e.g. a downloaded `model.safetensors` and its `config.json`:

    config = config_from_hf(json.load(open("config.json")))
    model = ViT(config)
    model.load_state_dict(from_hf_state_dict(safetensors.torch.load_file("model.safetensors"), config))
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import torch

from . import _validate
from ._validate import InputValueError
from .model import ViT, ViTConfig
from .tokens import resample_position_table

# Hugging Face names (transformers 5 layout, `vit.` prefix removed) to ours; `{i}` is the block index.
HF_NAME_MAP: dict[str, str] = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layers.{i}.layernorm_before": "blocks.{i}.norm1",
    "layers.{i}.attention.q_proj": "blocks.{i}.attn.qkv",  # rows 0 .. D-1 of qkv
    "layers.{i}.attention.k_proj": "blocks.{i}.attn.qkv",  # rows D .. 2D-1
    "layers.{i}.attention.v_proj": "blocks.{i}.attn.qkv",  # rows 2D .. 3D-1
    "layers.{i}.attention.o_proj": "blocks.{i}.attn.proj",
    "layers.{i}.layernorm_after": "blocks.{i}.norm2",
    "layers.{i}.mlp.fc1": "blocks.{i}.mlp.fc1",
    "layers.{i}.mlp.fc2": "blocks.{i}.mlp.fc2",
    "layernorm": "norm",
    "classifier": "head",
}

# Checkpoint files written by transformers 4 (most files on the Hub) use the older names on the left.
_LEGACY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^encoder\.layer\.(\d+)\.", r"layers.\1."),
    (r"\.attention\.attention\.query\.", ".attention.q_proj."),
    (r"\.attention\.attention\.key\.", ".attention.k_proj."),
    (r"\.attention\.attention\.value\.", ".attention.v_proj."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
)
_BLOCK = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
_QKV = ("q_proj", "k_proj", "v_proj")
_DROPPED_PREFIXES = ("pooler.",)


def _our_name(hf_name: str) -> tuple[str, str | None]:
    """Our name for one Hugging Face tensor name, and which of q/k/v it is (None when it is none of them)."""
    name = hf_name[len("vit."):] if hf_name.startswith("vit.") else hf_name
    for pattern, replacement in _LEGACY_RENAMES:
        name = re.sub(pattern, replacement, name)
    block = _BLOCK.match(name)
    if block:
        index, module, kind = block.groups()
        key = f"layers.{{i}}.{module}"
        if key in HF_NAME_MAP:
            part = module.rsplit(".", 1)[-1]
            return HF_NAME_MAP[key].format(i=index) + f".{kind}", part if part in _QKV else None
    else:
        module, _, kind = name.rpartition(".")
        if module in HF_NAME_MAP and kind in ("weight", "bias"):
            return f"{HF_NAME_MAP[module]}.{kind}", None
        if name in HF_NAME_MAP:  # cls_token and position_embeddings are bare parameters
            return HF_NAME_MAP[name], None
    raise InputValueError(f"state_dict has a tensor named {hf_name!r} that is not part of a Hugging Face "
                          f"ViTForImageClassification (see vitsteps.convert.HF_NAME_MAP); remove it, or check "
                          f"that the checkpoint is a ViT and not another architecture.")


def from_hf_state_dict(state_dict: Mapping[str, torch.Tensor], config: ViTConfig | None = None
                       ) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ViT state dict to `vitsteps.ViT`'s names, fusing q, k, v into `qkv`.

    Args:
        state_dict: tensors of a `transformers` `ViTForImageClassification` (or `ViTModel`), in the names of
            transformers 5 or of checkpoint files written by transformers 4, with or without the `vit.` prefix.
        config: when given, every tensor's shape is checked against the model it will be loaded into.

    Returns:
        A new dict for `ViT(config).load_state_dict(..., strict=True)`: `blocks.i.attn.qkv.weight` is
        `[3D, D]`, the query, key and value weights stacked in that order (and the biases `[3D]`).
    """
    _validate.instance(state_dict, "state_dict", Mapping, "a mapping of names to tensors",
                       "pass hf_model.state_dict() or the dict loaded from a checkpoint file")
    if config is not None:
        _validate.instance(config, "config", ViTConfig, "a vitsteps ViTConfig or None",
                           "make one from a Hugging Face config with config_from_hf(hf_config)")
    if not state_dict:
        raise InputValueError("state_dict is empty; pass the weights of a Hugging Face ViT.")
    if "blocks.0.attn.qkv.weight" in state_dict or "pos_embed" in state_dict:
        raise InputValueError("state_dict already uses timm / vitsteps names (blocks.0.attn.qkv, pos_embed); "
                              "load it directly with model.load_state_dict(state_dict), without converting.")
    converted: dict[str, torch.Tensor] = {}
    qkv_parts: dict[str, dict[str, torch.Tensor]] = {}
    for hf_name, value in state_dict.items():
        _validate.instance(hf_name, "state_dict's names", str, "strings", "pass hf_model.state_dict()")
        _validate.instance(value, f"state_dict[{hf_name!r}]", torch.Tensor, "a torch.Tensor",
                           "pass hf_model.state_dict() or the dict loaded from a checkpoint file")
        bare = hf_name[len("vit."):] if hf_name.startswith("vit.") else hf_name
        if bare.startswith(_DROPPED_PREFIXES) or bare == "embeddings.mask_token":
            continue  # ViTModel's pooler and the masked-image-modelling token have no counterpart
        name, part = _our_name(hf_name)
        if part is None:
            if name in converted:
                raise InputValueError(f"state_dict holds {name!r} twice (once as {hf_name!r}); pass one model's "
                                      f"weights, either with or without the 'vit.' prefix.")
            converted[name] = value
        else:
            qkv_parts.setdefault(name, {})[part] = value
    for name, parts in qkv_parts.items():
        missing = [part for part in _QKV if part not in parts]
        if missing:
            raise InputValueError(f"{name} needs the query, key and value tensors, but {missing} are missing "
                                  f"from state_dict; pass the complete state dict of the model.")
        shapes = {tuple(parts[part].shape) for part in _QKV}
        if len(shapes) != 1:
            raise InputValueError(f"the query, key and value tensors for {name} have different shapes "
                                  f"{[tuple(parts[part].shape) for part in _QKV]}; they must match to be stacked.")
        converted[name] = torch.cat([parts[part] for part in _QKV], dim=0)  # [3D, D] or [3D]
    if config is not None:
        _check_against(converted, config)
    return converted


def _check_against(converted: dict[str, torch.Tensor], config: ViTConfig) -> None:
    """Compare converted tensors with the names and shapes of `ViT(config)`, without building it."""
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in ViT(config).state_dict().items()}
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        fix = "make the config with config_from_hf(hf_config)"
        if "head.weight" in missing:
            fix = "the checkpoint has no classifier: build the model with num_classes=0"
        elif "head.weight" in unexpected:
            fix = "the checkpoint has a classifier: set num_classes to its number of labels"
        raise InputValueError(f"the converted weights do not fit ViT({config}): missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}; {fix}.")
    for name, shape in expected.items():
        if tuple(converted[name].shape) != shape:
            raise InputValueError(f"{name} has shape {tuple(converted[name].shape)} in the checkpoint but "
                                  f"{shape} in ViT(config); make the config with config_from_hf(hf_config).")


def config_from_hf(hf_config: object, **overrides: object) -> ViTConfig:
    """A `ViTConfig` with the shapes and settings of a Hugging Face `ViTConfig` (or its `config.json` dict).

    Args:
        hf_config: a `transformers.ViTConfig`, or the dict read from a checkpoint's `config.json`.
        **overrides: fields to replace afterwards, e.g. `num_classes=0` for a checkpoint without a classifier.

    Returns:
        The matching `ViTConfig`; `norm_eps` is Hugging Face's `layer_norm_eps` (its default is 1e-12).
    """
    if isinstance(hf_config, Mapping):
        settings = dict(hf_config)
    elif hasattr(hf_config, "to_dict"):
        settings = hf_config.to_dict()
        settings["num_labels"] = getattr(hf_config, "num_labels", None)
    else:
        _validate.fail(TypeError, "hf_config", "a transformers.ViTConfig or a dict from config.json", hf_config,
                       "pass hf_model.config or json.load(open('config.json'))")
    model_type = settings.get("model_type", "vit")
    if model_type != "vit":
        raise InputValueError(f"hf_config describes a {model_type!r} model, not 'vit'; only plain ViT checkpoints "
                              f"map onto vitsteps.ViT.")
    activation = settings.get("hidden_act", "gelu")
    if activation != "gelu":
        raise InputValueError(f"hf_config has hidden_act={activation!r}, but vitsteps.ViT uses exact GELU "
                              f"(Hugging Face's 'gelu'); other activations would give different numbers.")
    hidden, sizes = settings.get("hidden_size", 768), {}
    for field in ("image_size", "patch_size"):
        side = settings.get(field, 224 if field == "image_size" else 16)
        rows, cols = _validate.pair(side, f"hf_config.{field}")
        if rows != cols:
            raise InputValueError(f"hf_config.{field}={side!r} is not square; vitsteps.ViT takes square images "
                                  f"and patches.")
        sizes[field] = rows
    num_labels = settings.get("num_labels")
    if num_labels is None:
        num_labels = len(settings["id2label"]) if settings.get("id2label") else 2  # transformers' default
    config = ViTConfig(
        img_size=sizes["image_size"], patch_size=sizes["patch_size"], in_chans=settings.get("num_channels", 3),
        num_classes=num_labels, embed_dim=hidden, depth=settings.get("num_hidden_layers", 12),
        num_heads=settings.get("num_attention_heads", 12),
        mlp_ratio=settings.get("intermediate_size", 4 * hidden) / hidden,
        qkv_bias=bool(settings.get("qkv_bias", True)), drop_rate=settings.get("hidden_dropout_prob", 0.0),
        attn_drop_rate=settings.get("attention_probs_dropout_prob", 0.0),
        norm_eps=settings.get("layer_norm_eps", 1e-12))
    if int(config.embed_dim * config.mlp_ratio) != settings.get("intermediate_size", 4 * hidden):
        raise InputValueError(f"intermediate_size={settings['intermediate_size']} is not hidden_size times a ratio "
                              f"that survives int(); it cannot be expressed as ViTConfig.mlp_ratio.")
    return dataclasses.replace(config, **overrides) if overrides else config


def change_image_size(model: ViT, img_size: int) -> ViT:
    """A copy of `model` for images of another size: the learned position table is resampled.

    The patch rows of the table are laid out on their grid and interpolated bicubically; the CLS row is
    kept as it is (`vitsteps.tokens.resample_position_table`). A sin-cos table is rebuilt for the new grid.
    Every other weight is copied unchanged.

    Args:
        model: a `vitsteps.ViT`.
        img_size: the new image side; `model.config.patch_size` must divide it.

    Returns:
        A new `ViT` with `config.img_size == img_size`, in the same train/eval mode as `model`.
    """
    _validate.instance(model, "model", ViT, "a vitsteps.ViT", "convert other models first (from_hf_state_dict)")
    _validate.positive_int(img_size, "img_size")
    config = dataclasses.replace(model.config, img_size=img_size)  # validates that patch_size divides it
    resized = ViT(config)
    state = dict(model.state_dict())
    if config.pos_embed == "learn":
        state["pos_embed"] = resample_position_table(state["pos_embed"], new_grid=config.grid_size,
                                                     old_grid=model.config.grid_size)  # [1, 1 + N', D]
    else:
        state["pos_embed"] = resized.pos_embed.detach().clone()  # [1, 1 + N', D], the new grid's sin-cos
    resized.load_state_dict(state, strict=True)
    return resized.train(model.training)
