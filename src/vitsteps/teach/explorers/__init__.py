"""Interactive explorers for the notebooks: move a slider, see the shapes and the picture change.

Each explorer is one call in a notebook cell and returns an ipywidgets widget:

    patch_explorer()      01, 02  image -> patches -> tokens, by unfold and by conv
    token_explorer()      03, 04  CLS token in front, position table sliced and tiled
    attention_explorer()  05, 08  where one token looks, head by head, layer by layer, on a digit
    model_calculator()    06      sequence length, parameters (formula and count), FLOPs, the paper's presets

`compute` holds what they show as plain functions (`patch_pipeline`, `token_pipeline`, `attention_maps_for_digit`,
`model_stats`, ...), testable without a browser; `widgets` wires those functions to sliders and figures.
"""
from .widgets import attention_explorer, model_calculator, patch_explorer, token_explorer

__all__ = ["attention_explorer", "model_calculator", "patch_explorer", "token_explorer"]
