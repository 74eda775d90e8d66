"""Speed of `vitsteps.ViT` against `nn.TransformerEncoder` and against the written-out attention path.

Three models with the same weights at ViT-Ti/16 (224 px, batch 8, 2 threads):

- `vitsteps.ViT`: fused `qkv`, `F.scaled_dot_product_attention` (the attention weights are never stored);
- `nn.TransformerEncoder`: the same patch embedding, CLS, positions, final norm and head around
  `vitsteps.build_torch_encoder` (in eval mode without gradients PyTorch runs its fused fast path);
- plain attention: `vitsteps.ViT` with `fused_attn = False`, which materialises the `[B, h, L, L]` weights.

The contenders run in interleaved rounds (the order rotates each round) after a warm-up, so that load from
other processes hits them alike; the script prints medians, the spread over rounds, and ratios measured in
this one run: the median of the per-round ratios (each pairs runs made seconds apart) and the ratio of the best
rounds. On a busy shared machine single timings move by a factor of several; the ratios move far less.

Memory, measured two ways and labelled as such:
- "saved for backward": bytes of the activations autograd keeps for the backward pass (exact; counted with
  `torch.autograd.graph.saved_tensors_hooks`, each storage once, parameters excluded);
- "peak RSS": the rise of the process's resident memory during one step, from a baseline taken after
  `malloc_trim` (Linux `VmHWM` reset through `/proc/self/clear_refs`); approximate, allocator slack included.

    python tests/benchmarks/bench_speed.py [--rounds 7] [--batch 8] [--threads 2] [--preset vit_tiny]
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vitsteps import ViT, build_torch_encoder, get_config
from vitsteps.tokens import prepend_cls_token


class TorchEncoderViT(nn.Module):
    """`vitsteps.ViT`'s embedding and head around an `nn.TransformerEncoder` holding the same weights."""

    def __init__(self, model: ViT) -> None:
        super().__init__()
        config = model.config
        self.patch_embed = copy.deepcopy(model.patch_embed)
        self.cls_token = copy.deepcopy(model.cls_token)
        self.pos_embed = copy.deepcopy(model.pos_embed)
        self.encoder = build_torch_encoder(config.embed_dim, config.depth, config.num_heads, config.mlp_ratio,
                                           norm_eps=config.norm_eps)
        for layer, block in zip(self.encoder.layers, model.blocks, strict=True):
            layer.self_attn.in_proj_weight.data.copy_(block.attn.qkv.weight)  # [3D, D], rows q, k, v
            layer.self_attn.in_proj_bias.data.copy_(block.attn.qkv.bias)  # [3D]
            pairs = [(layer.self_attn.out_proj, block.attn.proj), (layer.linear1, block.mlp.fc1),
                     (layer.linear2, block.mlp.fc2), (layer.norm1, block.norm1), (layer.norm2, block.norm2)]
            for theirs, ours in pairs:
                theirs.load_state_dict(ours.state_dict())
        self.norm = copy.deepcopy(model.norm)
        self.head = copy.deepcopy(model.head)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        B, C, H, W = image.shape
        tokens = prepend_cls_token(self.patch_embed(image), self.cls_token) + self.pos_embed  # [B, L, D]
        return self.head(self.norm(self.encoder(tokens))[:, 0])  # [B, K]


def plain_attention(model: ViT) -> ViT:
    """A copy of `model` whose attention is written out (`softmax(q k^T / sqrt(d)) v`, weights stored)."""
    plain = copy.deepcopy(model)
    for block in plain.blocks:
        block.attn.fused_attn = False
    return plain


def forward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        model(images)


def forward_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    model.train()
    F.cross_entropy(model(images), labels).backward()
    model.zero_grad(set_to_none=True)


MODES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], None]] = {
    "forward": forward, "forward+backward": forward_backward}


def saved_for_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes of activations autograd keeps between forward and backward (each storage once, no parameters)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def peak_rss_rise(step: Callable[[], None]) -> int | None:
    """Bytes by which one call of `step` raises the resident set above its starting level; None off Linux."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        gc.collect()
        libc.malloc_trim(0)
        baseline = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark VmHWM to the current RSS
        step()
        return max(0, _status_kib("VmHWM") - baseline) * 1024
    except (OSError, AttributeError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vit_tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_config(args.preset)
    reference = ViT(config)
    contenders: dict[str, nn.Module] = {
        "vitsteps.ViT (SDPA)": reference,
        "nn.TransformerEncoder": TorchEncoderViT(reference),
        "plain attention": plain_attention(reference),
    }
    images = torch.randn(args.batch, config.in_chans, config.img_size, config.img_size)
    labels = torch.randint(config.num_classes, (args.batch,))
    with torch.no_grad():
        logits = {name: model.eval()(images) for name, model in contenders.items()}
    agreement = max((value - logits["vitsteps.ViT (SDPA)"]).abs().max().item() for value in logits.values())
    print(f"{args.preset}: {config.img_size} px, patch {config.patch_size}, D={config.embed_dim}, "
          f"depth {config.depth}, {config.num_heads} heads; batch {args.batch}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; logits of the three agree within {agreement:.1e}")

    names = list(contenders)
    times: dict[tuple[str, str], list[float]] = {(name, mode): [] for name in names for mode in MODES}
    for round_index in range(-args.warmup, args.rounds):
        for mode, run in MODES.items():
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order every round
                start = time.perf_counter()
                run(contenders[name], images, labels)
                elapsed = time.perf_counter() - start
                if round_index >= 0:
                    times[name, mode].append(elapsed)

    memory = {name: (saved_for_backward(model, images, labels),
                     peak_rss_rise(lambda m=model: forward(m, images, labels)),
                     peak_rss_rise(lambda m=model: forward_backward(m, images, labels)))
              for name, model in contenders.items()}

    def mib(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 2 ** 20:.0f}"

    print(f"\nmedian of {args.rounds} interleaved rounds (min-max), milliseconds; memory in MiB")
    header = (f"{'contender':<24}{'forward':>18}{'fwd+bwd':>18}{'saved for bwd':>15}"
              f"{'peak RSS fwd':>14}{'peak RSS f+b':>14}")
    print(header)
    print("-" * len(header))
    medians = {key: statistics.median(values) for key, values in times.items()}
    for name in names:
        cells = [f"{1e3 * medians[name, mode]:.0f} ({1e3 * min(times[name, mode]):.0f}-"
                 f"{1e3 * max(times[name, mode]):.0f})" for mode in MODES]
        saved, rss_forward, rss_both = memory[name]
        print(f"{name:<24}{cells[0]:>18}{cells[1]:>18}{mib(saved):>15}{mib(rss_forward):>14}{mib(rss_both):>14}")

    print("\ntime of vitsteps.ViT over the other's (below 1: vitsteps.ViT is faster): the median of the per-round "
          "ratios,\nwhich pairs runs made seconds apart under the same load; in brackets, the ratio of the best rounds")
    ours = "vitsteps.ViT (SDPA)"
    for other, target in [("nn.TransformerEncoder", "target <= 1.05"), ("plain attention", "target < 1")]:
        cells = []
        for mode in MODES:
            paired = statistics.median(a / b for a, b in zip(times[ours, mode], times[other, mode], strict=True))
            best = min(times[ours, mode]) / min(times[other, mode])
            cells.append(f"{mode} {paired:.2f} ({best:.2f})")
        print(f"  vitsteps.ViT / {other:<22} {'   '.join(cells)}   {target}")


if __name__ == "__main__":
    main()
