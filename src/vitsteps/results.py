"""The measurements shipped with the package, beside its checkpoints: what `tools/mnist_results.py` measured
(`load_results("mnist")`) and the position tables it stored during training (`load_position_tables("mnist")`).
"""
from __future__ import annotations

import json
from importlib import resources

import torch

from . import _validate
from .checkpoint import CHECKPOINT_DIR

RESULTS = {"mnist": "mnist_results.json"}  # measurements shipped with the package, by name


def load_results(name: str = "mnist") -> dict[str, object]:
    """The measurements shipped with the package: for `"mnist"`, what `tools/mnist_results.py` measured (the
    `mnist` ViT, the CNN and the SVC on the MNIST split, the training-set-size sweep, the ablation ladder, the
    Fig. 7 numbers, the seconds and the machine's load), as a dict of plain JSON values."""
    _validate.one_of(name, "name", sorted(RESULTS))
    path = resources.files("vitsteps") / CHECKPOINT_DIR / RESULTS[name]
    if not path.is_file():
        raise FileNotFoundError(f"the package holds no {RESULTS[name]}; run `make results` in the repository to "
                                f"measure it.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_position_tables(name: str = "mnist") -> dict[str, object]:
    """The position tables of the shipped `mnist` runs, stored every few epochs during training:
    `{"epochs": [E] ints, "images_seen": [E] ints, "tables": {seed: [E, N, D] float32 tensor}}` (patch rows only,
    no CLS row), the curve of the paper's Fig. 7 centre against training."""
    _validate.one_of(name, "name", sorted(RESULTS))
    path = resources.files("vitsteps") / CHECKPOINT_DIR / f"{name}_position_tables.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the package holds no {name}_position_tables.pt; run `make results` in the "
                                f"repository to measure it.")
    with resources.as_file(path) as file:
        record = torch.load(file, map_location="cpu", weights_only=True)
    record["tables"] = {int(seed): table.float() for seed, table in record["tables"].items()}  # [E, N, D] each
    return record
