"""vitsteps.train and the modules it gathers (vitsteps.recipes, .loop, .checkpoint, .results): the training loop,
evaluation and checkpoints, on tiny models, the `mnist` defaults, and bad input named."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import assert_all_refused, assert_refused, refusal_cases
from torch import nn

from vitsteps import loop
from vitsteps.data import DigitsSplit, MnistSplit, load_digits_split, load_mnist_split, synthetic_images
from vitsteps.model import ViT, ViTConfig, get_config
from vitsteps.recipes import make_optimizer
from vitsteps.train import (
    RECIPES,
    Evaluation,
    History,
    Recipe,
    confusion_matrix,
    evaluate,
    get_recipe,
    load_checkpoint,
    load_pretrained,
    pick_device,
    predict,
    pretrained_path,
    save_checkpoint,
    shipped_checkpoints,
    train,
    train_digits,
    train_mnist,
    warmup_cosine,
)

TINY = ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=4, embed_dim=8, depth=1, num_heads=2)
QUICK = Recipe(epochs=2, batch_size=16, lr=5e-3, warmup_epochs=1, max_shift=1, seed=0)


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_images(48, seed=0)


@pytest.fixture(scope="module")
def digits() -> DigitsSplit:
    return load_digits_split(seed=0)


def tiny_model(seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    return ViT(TINY)


def test_training_lowers_the_loss_on_synthetic_shapes(shapes) -> None:
    history = train(tiny_model(), shapes, QUICK, epochs=6, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]


def test_history_has_one_entry_per_epoch_and_validation_entries_with_validation_images(shapes) -> None:
    history = train(tiny_model(), shapes, QUICK, val=synthetic_images(16, seed=1), progress=False)
    assert history.epoch == [1, 2]
    assert len(history.train_loss) == len(history.train_accuracy) == len(history.lr) == 2
    assert len(history.val_loss) == len(history.val_accuracy) == 2
    assert all(0.0 <= accuracy <= 1.0 for accuracy in history.train_accuracy + history.val_accuracy)
    assert history.seconds > 0 and history.evaluated_on == "validation"
    assert set(history.as_dict()) >= {"train_loss", "val_accuracy", "seconds"}
    assert History.from_dict(history.as_dict()).val_accuracy == [round(a, 6) for a in history.val_accuracy]


def test_training_without_validation_images_records_no_validation_entries(shapes) -> None:
    history = train(tiny_model(), shapes, QUICK, progress=False)
    assert history.val_loss == [] and history.val_accuracy == []


def test_a_split_is_evaluated_on_its_test_half_every_epoch(digits) -> None:
    model = ViT(get_config("digits", embed_dim=8, depth=1, num_heads=2, patch_size=4))
    history = train(model, digits, QUICK, epochs=1, warmup_epochs=0, progress=False)
    assert len(history.val_accuracy) == 1 and history.evaluated_on == "test"


def test_eval_every_evaluates_those_epochs_and_the_last(shapes) -> None:
    history = train(tiny_model(), shapes, QUICK, epochs=7, val=synthetic_images(16, seed=1), eval_every=3,
                    progress=False)
    assert history.val_epoch == history.evaluated_epochs == [3, 6, 7]
    assert len(history.val_accuracy) == len(history.val_loss) == 3 and len(history.train_loss) == 7
    every = train(tiny_model(), shapes, QUICK, val=synthetic_images(16, seed=1), progress=False)
    assert every.val_epoch == [] and every.evaluated_epochs == [1, 2]


def test_on_epoch_sees_every_epoch_and_does_not_change_the_training(shapes) -> None:
    seen = []
    model = tiny_model()
    history = train(model, shapes, QUICK, epochs=3, progress=False,
                    on_epoch=lambda epoch, trained: seen.append((epoch, trained.pos_embed.detach().clone())))
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert not torch.equal(seen[0][1], seen[2][1]) and torch.equal(seen[2][1], model.pos_embed)
    plain = train(tiny_model(), shapes, QUICK, epochs=3, progress=False)
    assert plain.train_loss == history.train_loss


@pytest.fixture(scope="module")
def mnist() -> MnistSplit:
    return load_mnist_split()


def test_a_mnist_split_is_evaluated_on_its_validation_images(mnist) -> None:
    small = get_config("mnist", embed_dim=8, num_heads=2, depth=1, patch_size=7)
    few = MnistSplit(**{**{name: getattr(mnist, name) for name in MnistSplit.__dataclass_fields__},
                        "train_images": mnist.train_images[:64], "train_labels": mnist.train_labels[:64]})
    model, history = train_mnist(few, seed=1, config=small, epochs=6, warmup_epochs=1)
    assert history.evaluated_on == "validation" and history.evaluated_epochs == [5, 6]
    assert model.config == small
    assert history.val_accuracy[-1] == pytest.approx(evaluate(model, mnist.val_images, mnist.val_labels).accuracy)


def test_the_mnist_recipe_is_80_epochs_of_55_steps_with_4_pixel_shifts() -> None:
    recipe = RECIPES["mnist"]
    assert recipe.epochs * math.ceil(3500 / recipe.batch_size) == 4400
    assert (recipe.max_shift, recipe.shift_prob, recipe.mixup_alpha, recipe.lr) == (4, 1.0, 0.0, 2e-3)


def test_same_seed_gives_the_same_weights_and_history(shapes) -> None:
    first_model, second_model = tiny_model(), tiny_model()
    first = train(first_model, shapes, QUICK, progress=False)
    second = train(second_model, shapes, QUICK, progress=False)
    assert first.train_loss == second.train_loss
    assert all(torch.equal(a, b) for a, b in zip(first_model.state_dict().values(),
                                                 second_model.state_dict().values(), strict=True))


def test_another_seed_gives_other_weights(shapes) -> None:
    first_model, second_model = tiny_model(), tiny_model()
    train(first_model, shapes, QUICK, progress=False)
    train(second_model, shapes, QUICK, seed=1, progress=False)
    assert not torch.equal(first_model.head.weight, second_model.head.weight)


def test_mixup_changes_training_and_stays_reproducible(shapes) -> None:
    plain_model, mixed_model, again_model = tiny_model(), tiny_model(), tiny_model()
    train(plain_model, shapes, QUICK, progress=False)
    mixed = train(mixed_model, shapes, QUICK, mixup_alpha=0.4, progress=False)
    again = train(again_model, shapes, QUICK, mixup_alpha=0.4, progress=False)
    assert not torch.equal(plain_model.head.weight, mixed_model.head.weight)
    assert torch.equal(mixed_model.head.weight, again_model.head.weight) and mixed.train_loss == again.train_loss


def test_training_ends_in_eval_mode(shapes) -> None:
    model = tiny_model()
    train(model, shapes, QUICK, progress=False)
    assert not model.training


def test_progress_bar_draws_unless_switched_off(shapes, monkeypatch, capsys) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    train(tiny_model(), shapes, QUICK, progress=True)
    assert "training" in capsys.readouterr().err
    train(tiny_model(), shapes, QUICK, progress=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    train(tiny_model(), shapes, QUICK, progress=True)
    assert capsys.readouterr().err == ""


class PixelOracle(nn.Module):
    """Reads the class off the image: class k lights pixel (0, k); a blend's larger share wins."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * images[:, 0, 0, :4]  # [B, 4]


def test_mixup_training_accuracy_counts_the_image_with_the_larger_share() -> None:
    labels = torch.arange(4).repeat(12)  # [48]
    images = torch.zeros(48, 1, 8, 8)
    images[torch.arange(48), 0, 0, labels] = 1.0
    history = train(PixelOracle(), (images, labels), QUICK, epochs=4, max_shift=0, mixup_alpha=0.4, progress=False)
    assert history.train_accuracy == [1.0] * 4


def test_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    factors = [warmup_cosine(step, total_steps=100, warmup_steps=10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] < 0.001


def test_learning_rate_ends_near_zero(shapes) -> None:
    history = train(tiny_model(), shapes, QUICK, progress=False)
    assert history.lr[-1] < 0.01 * QUICK.lr


def test_recipe_overrides_replace_fields() -> None:
    assert get_recipe("digits", epochs=30).epochs == 30
    assert get_recipe("digits") == RECIPES["digits"]


def test_the_mnist_track_is_the_default_everywhere(monkeypatch) -> None:
    assert get_recipe() == RECIPES["mnist"]
    assert pretrained_path() == pretrained_path("mnist")
    assert load_pretrained()[0].config == get_config("mnist")
    seen = []
    monkeypatch.setattr(loop, "make_optimizer", lambda model, recipe: seen.append(recipe) or make_optimizer(
        model, recipe))
    train(tiny_model(), SHAPES, epochs=1, warmup_epochs=0, max_shift=0, progress=False)
    assert seen == [get_recipe("mnist", epochs=1, warmup_epochs=0, max_shift=0)]


def test_evaluate_counts_the_right_answers(shapes) -> None:
    images, labels = shapes
    model = tiny_model()
    result = evaluate(model, images, labels)
    logits = predict(model, images, batch_size=7)
    assert isinstance(result, Evaluation) and logits.shape == (48, 4)
    assert torch.equal(result.predictions, logits.argmax(dim=1))
    assert result.accuracy == pytest.approx(float((logits.argmax(dim=1) == labels).float().mean()))
    assert result.loss == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)


def test_predict_leaves_a_training_model_in_training_mode(shapes) -> None:
    model = tiny_model().train()
    predict(model, shapes[0])
    assert model.training


def test_confusion_matrix_puts_true_classes_in_rows() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 2, 0])
    matrix = confusion_matrix(labels, predictions, num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert int(matrix.sum()) == 6 and int(matrix.trace()) == 4


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_pick_device_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda: bool, mps: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device() == torch.device(expected)
    assert pick_device("cpu") == torch.device("cpu")


def test_checkpoint_round_trip_gives_the_same_logits(tmp_path: Path, shapes) -> None:
    model = tiny_model()
    train(model, shapes, QUICK, progress=False)
    weights, config = save_checkpoint(model, tmp_path / "tiny", metadata={"note": "test"})
    assert weights.name == "tiny.pt" and config.name == "tiny.json"
    loaded, metadata = load_checkpoint(tmp_path / "tiny.pt")
    assert metadata == {"note": "test"} and loaded.config == model.config
    assert torch.equal(predict(loaded, shapes[0]), predict(model, shapes[0]))


def test_a_half_checkpoint_is_half_the_size_and_loads_into_float32(tmp_path: Path, shapes) -> None:
    torch.manual_seed(0)
    model = ViT(get_config("digits"))
    full, _ = save_checkpoint(model, tmp_path / "full")
    half, _ = save_checkpoint(model, tmp_path / "half", half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = load_checkpoint(tmp_path / "half")
    assert loaded.pos_embed.dtype == torch.float32
    assert torch.allclose(loaded.head.weight, model.head.weight, rtol=1e-3, atol=1e-6)
    assert not torch.equal(loaded.head.weight, model.head.weight)  # rounded to float16's precision


def test_the_shipped_checkpoints_are_the_pairs_of_files_in_the_package() -> None:
    names = shipped_checkpoints()
    assert "digits" in names
    for name in names:
        path = pretrained_path(name)
        assert path.with_suffix(".json").is_file() and path.with_suffix(".pt").is_file()


def test_history_from_a_shipped_checkpoint_loads() -> None:
    _, metadata = load_pretrained("digits")
    history = History.from_dict(metadata["history"])
    assert history.val_epoch == [] and history.evaluated_epochs == history.epoch
    assert history.evaluated_on == "test"  # the digits split's held-out part is its test half
    _, metadata = load_pretrained("mnist")
    assert History.from_dict(metadata["history"]).evaluated_epochs == list(range(5, 81, 5))


def test_a_history_written_with_the_old_test_names_loads_as_validation() -> None:
    old = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "test_epoch": [2], "test_accuracy": [0.7], "test_loss": [0.9],
           "evaluated_on": "validation"}
    history = History.from_dict(old)
    assert (history.val_epoch, history.val_accuracy, history.val_loss) == ([2], [0.7], [0.9])
    assert history.evaluated_epochs == [2]


def test_loader_rejects_a_config_that_does_not_match_the_weights(tmp_path: Path) -> None:
    save_checkpoint(tiny_model(), tmp_path / "tiny")
    record = json.loads((tmp_path / "tiny.json").read_text())
    record["config"]["embed_dim"] = 16
    (tmp_path / "tiny.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"tiny\.pt does not match the config in tiny\.json.*"
                                         r"made for embed_dim=8, the config says embed_dim=16\); save the weights"):
        load_checkpoint(tmp_path / "tiny")


def test_loader_rejects_a_config_with_another_depth(tmp_path: Path) -> None:
    save_checkpoint(tiny_model(), tmp_path / "tiny")
    record = json.loads((tmp_path / "tiny.json").read_text())
    record["config"]["depth"] = 2
    (tmp_path / "tiny.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="missing.*blocks.1"):
        load_checkpoint(tmp_path / "tiny")


@pytest.mark.parametrize("content", ['{"weights": 1}', '{"config": {"embed_dim": 8, "colour": "red"}}'])
def test_loader_rejects_json_that_is_not_a_config(tmp_path: Path, content: str) -> None:
    save_checkpoint(tiny_model(), tmp_path / "tiny")
    (tmp_path / "tiny.json").write_text(content)
    with pytest.raises(ValueError, match="tiny.json"):
        load_checkpoint(tmp_path / "tiny")


def test_loader_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_checkpoint(tmp_path / "nothing")


def test_shipped_digits_checkpoint_is_small_loads_alone_and_is_accurate(digits) -> None:
    path = pretrained_path("digits")
    assert path.with_suffix(".pt").stat().st_size < 1_000_000
    model, metadata = load_pretrained("digits")
    assert model.config == get_config("digits")
    assert metadata["split_seed"] == 0
    result = evaluate(model, digits.test_images, digits.test_labels)
    assert result.accuracy == pytest.approx(metadata["test_accuracy"], abs=1e-4)
    assert result.accuracy == pytest.approx(metadata["history"]["val_accuracy"][-1], abs=1e-4)
    assert result.accuracy > 0.97


def test_train_digits_builds_the_preset_and_trains_it(digits) -> None:
    small = get_config("digits", embed_dim=8, num_heads=2, depth=1, patch_size=4)
    model, history = train_digits(digits, small, QUICK, epochs=1, warmup_epochs=0, progress=False)
    assert model.config == small and len(history.epoch) == 1


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

SHAPES = synthetic_images(8, seed=0)
RECIPE_VALUES = {"epochs": 0, "batch_size": 0, "lr": "fast", "weight_decay": math.inf, "warmup_epochs": 2,
                 "label_smoothing": 1.0, "max_shift": -1, "shift_prob": 1.5, "seed": -1, "mixup_alpha": -0.2}

REFUSED = {
    **{f"train: a recipe with {field}={value!r}":
       (lambda field=field, value=value: train(tiny_model(), SHAPES, QUICK, progress=False, **{field: value}),
        (TypeError, ValueError), rf"^{field}")
       for field, value in RECIPE_VALUES.items()},
    "train: something that is not a model":
        (lambda: train("vit", SHAPES, QUICK), TypeError, r"model must be a torch\.nn\.Module, got 'vit'"),
    "train: data that is a name":
        (lambda: train(tiny_model(), "digits", QUICK), TypeError,
         r"data must be a DigitsSplit, a MnistSplit or an \(images"),
    "train: evaluating every 0 epochs":
        (lambda: train(tiny_model(), SHAPES, QUICK, eval_every=0), ValueError,
         r"eval_every must be a positive int, got 0; pass 1 to evaluate after every epoch"),
    "train: an on_epoch that is not a function":
        (lambda: train(tiny_model(), SHAPES, QUICK, on_epoch="print"), TypeError,
         r"on_epoch must be a function on_epoch\(epoch, model\) or None, got 'print'"),
    "train_mnist: a digits split":
        (lambda: train_mnist(load_digits_split(0)), TypeError, r"split must be a MnistSplit.*; use load_mnist_split"),
    "train_mnist: a negative seed":
        (lambda: train_mnist(load_mnist_split(), seed=-1), ValueError, r"seed must be an int >= 0, got -1"),
    "train: images without channels":
        (lambda: train(tiny_model(), (torch.rand(4, 8, 8), torch.zeros(4).long()), QUICK), ValueError,
         r"train_images must be a tensor with 4 dimensions"),
    "train: float labels":
        (lambda: train(tiny_model(), (torch.rand(4, 1, 8, 8), torch.zeros(4)), QUICK), TypeError,
         r"train_labels must be a 1-D integer tensor"),
    "train: fewer labels than images":
        (lambda: train(tiny_model(), (torch.rand(4, 1, 8, 8), torch.zeros(3).long()), QUICK), ValueError,
         r"train_images has 4 images but train_labels has 3 labels; they must match"),
    "train: no images":
        (lambda: train(tiny_model(), (torch.rand(0, 1, 8, 8), torch.zeros(0).long()), QUICK), ValueError,
         r"train_images is empty; pass at least one image"),
    "train: labels beyond the model's classes":
        (lambda: train(tiny_model(), (torch.rand(4, 1, 8, 8), torch.full((4,), 7)), QUICK), ValueError,
         r"train_labels go from 7 to 7 but the model has num_classes=4; labels must lie in 0\.\.3"),
    "train: validation images that are not a pair":
        (lambda: train(tiny_model(), SHAPES, QUICK, val=SHAPES[0]), TypeError,
         r"val must be an \(images, labels\) pair or None, got .*; pass \(split\.val_images, split\.val_labels\)"),
    "train: validation labels beyond the model's classes":
        (lambda: train(tiny_model(), SHAPES, QUICK, val=(SHAPES[0], torch.full((8,), 6))), ValueError,
         r"val_labels go from 6 to 6 but the model has num_classes=4"),
    "History.from_dict: a field it does not have":
        (lambda: History.from_dict({"epoch": [1], "colour": "red"}), ValueError,
         r"record has entries \['colour'\] that a History does not have"),
    "History.from_dict: a list":
        (lambda: History.from_dict([1, 2]), TypeError, r"record must be a dict of History fields, got \[1, 2\]"),
    "train: an unknown recipe field":
        (lambda: train(tiny_model(), SHAPES, QUICK, momentum=0.9), TypeError, r"Recipe has no field \['momentum'\]"),
    "train: a recipe that is a dict":
        (lambda: train(tiny_model(), SHAPES, {"epochs": 1}), TypeError, r"recipe must be a Recipe or None"),
    "train: progress that is text":
        (lambda: train(tiny_model(), SHAPES, QUICK, progress="yes"), TypeError,
         r"progress must be True or False, got 'yes'"),
    "get_recipe: an unknown name":
        (lambda: get_recipe("imagenet"), ValueError, r"name must be one of 'digits', 'mnist', got 'imagenet'"),
    "pick_device: an unknown device":
        (lambda: pick_device("banana"), ValueError, r"device must be 'cpu', 'cuda', 'mps' or None"),
    "evaluate: fewer labels than images, named as its parameters":
        (lambda: evaluate(tiny_model(), SHAPES[0], torch.zeros(3).long()), ValueError,
         r"^images has 8 images but labels has 3 labels; they must match one to one"),
    "evaluate: labels beyond the model's classes":
        (lambda: evaluate(tiny_model(), SHAPES[0], torch.full((8,), 9)), ValueError,
         r"labels go from 9 to 9 but the model has num_classes=4"),
    "predict: images without a batch dimension":
        (lambda: predict(tiny_model(), torch.rand(1, 8, 8)), ValueError, r"images must be a tensor with 4 dimensions"),
    "predict: a batch size of 0":
        (lambda: predict(tiny_model(), torch.rand(2, 1, 8, 8), batch_size=0), ValueError,
         r"batch_size must be a positive int, got 0"),
    "confusion_matrix: float labels":
        (lambda: confusion_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 3), TypeError,
         r"labels must be a 1-D integer tensor"),
    "confusion_matrix: a prediction beyond the classes":
        (lambda: confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 5]), 3), ValueError,
         r"predictions must lie in 0\.\.2; pass the right num_classes"),
    "confusion_matrix: fewer predictions than labels":
        (lambda: confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3), ValueError,
         r"labels has 2 entries but predictions has 1"),
    "save_checkpoint: a plain module":
        (lambda: save_checkpoint(nn.Linear(2, 2), "linear"), TypeError, r"model must be a vitsteps ViT"),
    "save_checkpoint: half that is text":
        (lambda: save_checkpoint(tiny_model(), "tiny", half="yes"), TypeError, r"half must be True or False"),
    "save_checkpoint: metadata that is a list":
        (lambda: save_checkpoint(tiny_model(), "tiny", metadata=["note"]), TypeError,
         r"metadata must be a dict or None, got \['note'\]"),
    "load_checkpoint: a path that is a number":
        (lambda: load_checkpoint(3), TypeError, r"path must be a str or Path, got 3"),
    "pretrained_path: an unknown checkpoint":
        (lambda: pretrained_path("imagenet"), ValueError, r"name must be one of 'digits'.*, got 'imagenet'"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_pick_device_refuses_cuda_when_absent() -> None:
    assert_refused(lambda: pick_device("cuda"), ValueError, r"device='cuda' was asked for but torch sees no CUDA GPU")
