"""vitsteps: a Vision Transformer built stage by stage, the package behind the notebook series.

Stages, each with its single source:
    patches  (01, 02)  image to patch tokens, by unfold and by conv
    tokens   (03, 04)  CLS token and position table
    encoder  (05)      attention, the pre-norm block, the torch.nn encoder
    model    (06)      ViTConfig, PRESETS, ViT
"""
from .encoder import Attention, Block, build_torch_encoder, scaled_dot_product
from .model import PRESETS, ViT, ViTConfig, count_parameters, get_config, parameter_formula
from .patches import (
                      PatchEmbed,
                      image_to_patches,
                      patch_embed_conv,
                      patch_embed_unfold,
                      patches_to_image,
                      weight_to_kernel,
)
from .tokens import add_position_embedding, prepend_cls_token, resample_position_table, sincos_position_table

__version__ = "0.1.0"

__all__ = [
    "Attention", "Block", "PRESETS", "PatchEmbed", "ViT", "ViTConfig", "add_position_embedding",
    "build_torch_encoder", "count_parameters", "get_config", "image_to_patches", "parameter_formula",
    "patch_embed_conv", "patch_embed_unfold", "patches_to_image", "prepend_cls_token",
    "resample_position_table", "scaled_dot_product", "sincos_position_table", "weight_to_kernel",
]
