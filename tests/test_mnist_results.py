"""tools/mnist_results.py, the script behind the shipped `mnist` results: which runs it makes, in which order, how
workers share them, and the Fig. 7 numbers it records (the training itself is `vitsteps.train`'s, tested there)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vitsteps.ablation import ViTVariant
from vitsteps.model import ViT, count_parameters, get_config
from vitsteps.train import RECIPES

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mnist_results", ROOT / "tools" / "mnist_results.py")
results = importlib.util.module_from_spec(_spec)
sys.modules["mnist_results"] = results  # dataclasses look their module up while the class is made
_spec.loader.exec_module(results)


def test_the_schedule_holds_every_run_once_the_shipped_models_first_and_the_ladder_seed_by_seed():
    schedule = results.schedule()
    names = [run.name for run in schedule]
    expected = {run.name for run in results.full_runs() + results.ladder_runs() + results.sweep_runs()}
    assert len(names) == len(set(names)) and set(names) == expected
    assert names[:3] == ["vit_s0", "vit_s1", "vit_s2"]  # the shipped checkpoints come first
    middle = [run for run in schedule if run.name.startswith(("ladder_", "sweep_"))]
    assert [run.seed for run in middle] == sorted(run.seed for run in middle)  # every seed 0 before any seed 1
    assert {run.name for run in results.full_runs() if run.model == "vit"} <= {r.name for r in schedule if r.keep}


def test_every_sweep_run_takes_the_ladders_number_of_optimizer_steps():
    batch = RECIPES["mnist"].batch_size
    for run in results.sweep_runs():
        steps = run.epochs * math.ceil(run.n_train / batch)
        assert abs(steps - results.SWEEP_STEPS) <= math.ceil(run.n_train / batch) / 2, run.name
    sizes = {run.n_train for run in results.sweep_runs()}
    assert sizes == {*results.SWEEP_SIZES, 3500}


@pytest.mark.parametrize("rung", list(results.LADDER))
def test_each_rung_of_the_ladder_builds_the_model_it_names(rung):
    run = next(run for run in results.ladder_runs() if run.name.startswith("ladder_") and run.seed == 0
               and dict(run.changes) == results.LADDER[rung])
    model = results.build(run)
    reference = ViT(get_config("mnist"))
    changes = results.LADDER[rung]
    assert isinstance(model, ViTVariant) == any(key in changes for key in results.VARIANT_FIELDS)
    if "patch_size" in changes:
        assert model.config.patch_size == changes["patch_size"] and model.config.num_patches == 16
    if changes.get("position") == "none":
        assert not isinstance(model.pos_embed, torch.nn.Parameter) and not model.pos_embed.any()
    if changes.get("pos_embed_init") == "trunc_normal" and "pos_embed" not in changes:
        assert 0.01 < float(model.pos_embed.detach().std()) < 0.03  # timm's start, not the preset's zeros
    if not changes:
        assert count_parameters(model) == count_parameters(reference) and not model.pos_embed.any()


def test_a_worker_takes_a_run_once_and_takes_over_the_claim_of_a_worker_that_ended(tmp_path):
    assert results._claim(tmp_path, "vit_s0")
    assert not results._claim(tmp_path, "vit_s0")  # held by this (living) process
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "vit_s1.claim").write_text(ended.stdout.strip(), encoding="utf-8")
    assert results._claim(tmp_path, "vit_s1")
    assert (tmp_path / "vit_s1.claim").read_text(encoding="utf-8") == str(os.getpid())


def test_the_fig7_numbers_of_a_model_are_in_range_and_undefined_for_a_table_of_zeros():
    torch.manual_seed(0)
    images = torch.rand(6, 1, 28, 28)  # [6, 1, 28, 28]
    fresh = ViT(get_config("mnist")).eval()  # the preset's table starts at zeros
    numbers = results.fig7_numbers(fresh, images)
    assert numbers["rank_corr"] is None  # a zero row has no direction
    distances = torch.tensor(numbers["attention_distance"])  # [depth, h]
    assert distances.shape == (6, 4) and bool((distances > 0).all() and (distances < 24 * math.sqrt(2)).all())
    assert 0 <= numbers["rollout"]["min"] <= numbers["rollout"]["max"] <= 1
    assert abs(sum(numbers["filter_pc_share"]) - 1) < 1 and all(0 <= v <= 1 for v in numbers["filter_pc_share"])
    timm = ViT(get_config("mnist", pos_embed_init="trunc_normal")).eval()
    assert -0.3 < results.fig7_numbers(timm, images)["rank_corr"] < 0.3  # a random table knows no layout


# --------------------------------------------------------------------------------------- the shipped files


def test_the_shipped_model_scores_what_its_results_file_says():
    from vitsteps.analysis import position_rank_correlation
    from vitsteps.data import load_mnist_split
    from vitsteps.train import evaluate, load_pretrained, load_results

    shipped = load_results("mnist")
    model, metadata = load_pretrained("mnist")
    split = load_mnist_split()
    accuracy = evaluate(model, split.test_images, split.test_labels).accuracy
    assert accuracy == pytest.approx(shipped["vit"]["test_shipped_float16"]["values"][0], abs=1e-6)
    rank = position_rank_correlation(model.pos_embed, model.config.grid_size, model.config.patch_size)
    assert rank == pytest.approx(shipped["fig7"]["by_seed"]["0"]["trained"]["rank_corr"], abs=1e-4)
    assert metadata["val_accuracy"] == shipped["vit"]["runs"]["0"]["val"]


def readme_figures(shipped: dict) -> list[str]:
    """The phrases the README's paragraph on the `mnist` model states, from the shipped results."""
    vit, cnn, svc, fig7 = shipped["vit"], shipped["cnn"], shipped["svc"], shipped["fig7"]["by_seed"]
    ranks = [fig7[seed]["trained"]["rank_corr"] for seed in sorted(fig7)]
    inner = [fig7[seed]["trained"]["rank_corr_inner5"] for seed in sorted(fig7)]
    fresh = [fig7[seed]["fresh_timm_init"]["rank_corr"] for seed in sorted(fig7)]
    seconds = shipped["timing"]["median_seconds"]
    ladder = shipped["ladder"]["rungs"]
    vit_sweep, cnn_sweep = ([size["test"]["mean"] for size in shipped["sweep"][model].values()]
                            for model in ("vit", "cnn"))
    return [f"{vit['test']['mean']:.1%} mean test accuracy over {len(vit['test']['values'])} seeds",
            ", ".join(f"{value:.1%}" for value in vit["test"]["values"]),
            f"{svc['test_accuracy']:.1%} for an RBF SVC", f"{cnn['test']['mean']:.1%} for a CNN",
            f"{seconds['vit']:.1f} s on 2 threads", f"{seconds['cnn']:.1f} s for the CNN",
            f"{statistics.fmean(ranks):.2f} over the {len(ranks)} seeds ({', '.join(f'{v:.2f}' for v in ranks)}",
            f"inner 5x5 patches: {statistics.fmean(inner):.2f}",
            f"from {min(fresh):.2f} to {max(fresh):.2f} for an untrained table",
            f"about {round(shipped['recipe']['epochs'] * seconds['vit'] / 60)} minutes for the 80 epochs",
            f"the CNN scores between {min(cnn_sweep):.1%} and {max(cnn_sweep):.1%}",
            f"the ViT scores between {min(vit_sweep):.1%} and {max(vit_sweep):.1%}",
            f"sin-cos table ({ladder['2-D sin-cos (fixed)']['val']['mean']:.1%}) learns fastest",
            f"no position table ({ladder['no position table']['val']['mean']:.1%})",
            f"mean pooling ({ladder['mean pooling']['val']['mean']:.1%}) slowest",
            f"({shipped['ladder']['epochs']} epochs, {shipped['sweep']['steps']:,} optimizer steps"]


def test_the_readme_states_the_shipped_figures():
    from vitsteps.train import load_results

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    missing = [phrase for phrase in readme_figures(load_results("mnist")) if phrase not in readme]
    assert not missing, f"README.md does not say (rewrite its mnist paragraph from the shipped results): {missing}"


def test_a_run_list_of_ones_own_is_read_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text('[{"name": "a", "model": "vit", "seed": 0, "epochs": 2, "warmup_epochs": 1, "n_train": 100,'
                    ' "changes": [["patch_size", 7]]}]')
    (run,) = results.read_runs(path)
    assert run == results.Run("a", "vit", 0, 2, 1, n_train=100, changes=(("patch_size", 7),))
    assert results.build(run).config.patch_size == 7
    for text, words in (('[{"name": "a", "model": "vit", "seed": 0, "epochs": 2, "warmup_epochs": 1, "lr": 1}]',
                         "a run has no field 'lr'"),
                        ('[{"name": "a", "model": "mlp", "seed": 0, "epochs": 2, "warmup_epochs": 1}]',
                         "model must be 'vit' or 'cnn'"),
                        ('[{"name": "a", "model": "vit"}]', "every run needs name, model, seed"),
                        ("[]", "non-empty JSON list"), ("{", "give a JSON list of runs")):
        path.write_text(text)
        with pytest.raises(ValueError, match=words):
            results.read_runs(path)


def test_collect_gathers_the_runs_in_order_and_names_those_not_done(tmp_path):
    runs = [results.Run(name, "cnn", 0, 1, 0) for name in ("b", "a")]
    (tmp_path / "b.json").write_text('{"name": "b", "val": 0.5}')
    with pytest.raises(FileNotFoundError, match=r"1 run\(s\) not done .*: a; train them first"):
        results.collect(tmp_path, runs)
    (tmp_path / "a.json").write_text('{"name": "a", "val": 0.25}')
    collected = json.loads(results.collect(tmp_path, runs).read_text())
    assert list(collected["runs"]) == ["b", "a"] and collected["runs"]["a"]["val"] == 0.25
    assert not list(tmp_path.glob(".*.tmp"))
