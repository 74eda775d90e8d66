"""Checkpoints: a trained ViT saved and loaded, and the ones shipped inside the package.

    save_checkpoint(model, "runs/mine", metadata={"epochs": 80})
    model, metadata = load_checkpoint("runs/mine")
    model, metadata = load_pretrained("mnist")       # shipped: `mnist`, `mnist_seed1`, `mnist_seed2`, `digits`

A checkpoint is two files side by side: `name.pt` (the state dict, every tensor by its timm name) and `name.json`
(the `ViTConfig` and how the model was trained). The shipped ones live in the package's data folder
`vitsteps/checkpoints/`, with the measurements `vitsteps.results` reads.
"""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import torch

from . import _validate
from .loop import pick_device
from .model import ViT, ViTConfig

CHECKPOINT_DIR = "checkpoints"  # the data folder inside the vitsteps package


def _checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    _validate.instance(path, "path", (str, Path), "a str or Path", "pass e.g. 'checkpoints/mnist'")
    base = Path(path)
    if base.suffix in (".pt", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".pt"), base.with_suffix(".json")


def save_checkpoint(model: ViT, path: str | Path, metadata: dict[str, object] | None = None,
                    half: bool = False) -> tuple[Path, Path]:
    """Write `path.pt` (the state dict, on the CPU) and `path.json` (the config and `metadata`).

    Args:
        model: the ViT to save.
        path: where, without suffix (or with `.pt` / `.json`).
        metadata: anything JSON can hold, e.g. how the model was trained.
        half: store floating-point tensors as float16: half the file; `load_checkpoint` reads them back into the
            model's float32 parameters (each weight rounded to about 3 significant digits).

    Returns:
        The two paths written.
    """
    _validate.instance(model, "model", ViT, "a vitsteps ViT (its config is saved beside the weights)",
                       "build it with ViT(config)")
    if metadata is not None:
        _validate.instance(metadata, "metadata", dict, "a dict or None", "pass e.g. {'epochs': 150}")
    _validate.flag(half, "half")
    weights_path, config_path = _checkpoint_files(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    if half:
        state = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    torch.save(state, weights_path)
    record = {"config": dataclasses.asdict(model.config), "metadata": metadata or {}}
    config_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return weights_path, config_path


def _fields_of_state(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """The ViTConfig fields a timm-named state dict reveals by its shapes (those it holds)."""
    fields: dict[str, int] = {}
    kernel = state.get("patch_embed.proj.weight")
    if kernel is not None and kernel.dim() == 4:
        fields.update(embed_dim=kernel.shape[0], in_chans=kernel.shape[1], patch_size=kernel.shape[-1])
    blocks = {name.split(".")[1] for name in state if name.startswith("blocks.")}
    if blocks:
        fields["depth"] = len(blocks)
    head = state.get("head.weight")
    if head is not None and head.dim() == 2:
        fields["num_classes"] = head.shape[0]
    return fields


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ViT, dict[str, object]]:
    """Rebuild a ViT from `path.json` and fill it with `path.pt`; the model is returned in eval mode.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the JSON does not describe a ViTConfig, or the weights do not fit the model it describes.

    Returns:
        `(model, metadata)`.
    """
    weights_path, config_path = _checkpoint_files(path)
    for file in (config_path, weights_path):
        if not file.is_file():
            raise FileNotFoundError(f"no checkpoint file at {file}; a checkpoint is a .pt and a .json side by side.")
    record = json.loads(config_path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{config_path.name} must hold an object with a 'config' entry (the ViTConfig fields); "
                         f"write it with save_checkpoint.")
    try:
        config = ViTConfig(**record["config"])
    except TypeError as error:
        raise ValueError(f"{config_path.name} does not describe a ViTConfig ({error}); write it with "
                         f"save_checkpoint.") from error
    model = ViT(config)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file or a pickled object that is not a state dict
        raise ValueError(f"{weights_path.name} is not a readable state dict ({type(error).__name__}); "
                         f"write it with save_checkpoint.") from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{weights_path.name} must hold a state dict (parameter name to tensor); "
                         f"write it with save_checkpoint.")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{name} {tuple(state[name].shape)} vs {tuple(expected[name].shape)}"
             for name in sorted(set(expected) & set(state)) if state[name].shape != expected[name].shape]
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            f"missing {missing[:4]}" if missing else "", f"unexpected {unexpected[:4]}" if unexpected else "",
            f"shape (file vs config) {wrong[:4]}" if wrong else "") if part)
        made_for = _fields_of_state(state)
        differ = {name: value for name, value in made_for.items() if getattr(config, name) != value}
        hint = (f" (the weights were made for {', '.join(f'{k}={v}' for k, v in differ.items())}, the config says "
                f"{', '.join(f'{k}={getattr(config, k)}' for k in differ)})" if differ else "")
        raise ValueError(f"{weights_path.name} does not match the config in {config_path.name}: {details}{hint}; "
                         f"save the weights and the config together with save_checkpoint.")
    model.load_state_dict(state)
    model.to(pick_device(device)).eval()
    return model, record.get("metadata", {})


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints shipped inside the package (a `.pt` and a `.json` side by side), e.g. `"mnist"`."""
    folder = resources.files("vitsteps") / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    files = {Path(str(p)).name for p in folder.iterdir()}
    return sorted(name[:-3] for name in files if name.endswith(".pt") and f"{name[:-3]}.json" in files)


def pretrained_path(name: str = "mnist") -> Path:
    """Path (without suffix) of a checkpoint shipped inside the package."""
    available = shipped_checkpoints()
    _validate.one_of(name, "name", available, f"the shipped checkpoints are {available}")
    return Path(str(resources.files("vitsteps") / CHECKPOINT_DIR / name))


def load_pretrained(name: str = "mnist") -> tuple[ViT, dict[str, object]]:
    """A checkpoint shipped with the package, by default the trained `mnist` model: `(model, metadata)`."""
    return load_checkpoint(pretrained_path(name))
