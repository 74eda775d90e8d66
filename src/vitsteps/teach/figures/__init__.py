"""Pictures for the notebooks, one module per part of the series; every figure is re-exported here.

    from vitsteps.teach import figures
    fig = figures.plot_patch_grid(image, patch_size=4)

| module     | notebooks | figures                                                                              |
|------------|-----------|--------------------------------------------------------------------------------------|
| `patches`  | 01, 02    | patch grid, patch sequence, token sources, patch mosaic, patches to tokens, kernels  |
| `tokens`   | 03, 04    | a matrix, token sequences, token assembly, position similarity                       |
| `encoder`  | 05        | attention per head, attention of one token on the image                              |
| `model`    | 06        | parameter breakdown, cost breakdown, class scores                                    |
| `training` | 07        | image grid, shifted digits, learning rate, training curves, confusion matrix,       |
|            |           | misclassified images, training-set-size sweep, ablation ladder                       |
| `inside`   | 08        | position layout and its curve, attention distance, attention maps, filter components |

Every function returns the `Figure` it drew (a notebook shows it); none of them changes its inputs. The
helpers they share (the patch grid, panels redrawn in place) live in `_draw`. Imported in a notebook, this module
has the kernel store figures at 150 pixels per inch, sharp on high-density screens (`_draw.SCREEN_DPI`).
"""
from ._draw import grid_shape, show_figures_for_screens, si_format
from .encoder import plot_attention_heads, plot_attention_on_image
from .inside import (
    plot_attention_distance,
    plot_attention_maps,
    plot_filter_components,
    plot_layout_curve,
    plot_position_layout,
)
from .model import plot_class_scores, plot_cost_breakdown, plot_parameter_breakdown
from .patches import (
    patch_mosaic,
    plot_kernel_filters,
    plot_patch_grid,
    plot_patch_sequence,
    plot_patches_to_tokens,
    plot_token_sources,
)
from .tokens import plot_matrix, plot_position_similarity, plot_token_assembly, plot_token_sequence
from .training import (
    plot_ablation_ladder,
    plot_confusion_matrix,
    plot_image_grid,
    plot_learning_rate,
    plot_misclassified,
    plot_shifted_digits,
    plot_size_sweep,
    plot_training_curves,
)

__all__ = [
    "grid_shape", "patch_mosaic", "plot_ablation_ladder", "plot_attention_distance", "plot_attention_heads",
    "plot_attention_maps", "plot_attention_on_image", "plot_class_scores", "plot_confusion_matrix",
    "plot_cost_breakdown", "plot_filter_components", "plot_image_grid", "plot_kernel_filters", "plot_layout_curve",
    "plot_learning_rate", "plot_matrix", "plot_misclassified", "plot_parameter_breakdown", "plot_patch_grid",
    "plot_patch_sequence", "plot_patches_to_tokens", "plot_position_layout", "plot_position_similarity",
    "plot_shifted_digits", "plot_size_sweep", "plot_token_assembly", "plot_token_sequence", "plot_token_sources",
    "plot_training_curves", "si_format",
]

show_figures_for_screens()
