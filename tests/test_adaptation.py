"""Unsupervised domain adaptation (`hf_transfer.adaptation`): the losses, gradient reversal, the trainer, the recipe."""

import json
import math
import subprocess
import sys
from pathlib import Path

import fixtures
import numpy as np
import pytest
import torch
from modeling_utils import save_tiny_bert, tiny_training_args
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, Trainer

from hf_transfer import BackboneSpec, TransferForSequenceClassification
from hf_transfer.adaptation import (
    ADAPTER_WEIGHTS_NAME,
    AdaptationArguments,
    AdaptationTrainer,
    ConditionalDomainAdversarialLoss,
    CorrelationAlignmentLoss,
    DomainAdapter,
    DomainAdversarialLoss,
    MinimumClassConfusionLoss,
    MultipleKernelMMD,
    WarmStartGradientReverseLayer,
    head_input_dim,
    load_target_datasets,
    prepare_target_datasets,
    unsupervised_scores,
    warm_start_coefficient,
)
from hf_transfer.data import DataTrainingArguments, load_raw_datasets
from hf_transfer.features import collate_cached

SCRIPT = fixtures.RECIPE_SCRIPT
COMMON = fixtures.RECIPE_COMMON_FLAGS
finetune = fixtures.load_recipe_script()


# ------------------------------------------------------------------------------------------------ gradient reversal


def test_gradient_reversal_flips_and_scales_the_gradient_by_the_scheduled_coefficient():
    layer = WarmStartGradientReverseLayer(alpha=10.0, max_steps=100)
    upstream = torch.tensor([1.0, -2.0, 3.0])
    for step, expected in ((0, 0.0), (50, 2 / (1 + math.exp(-5)) - 1), (100, 2 / (1 + math.exp(-10)) - 1)):
        layer.set_step(step)
        x = torch.zeros(3, requires_grad=True)
        out = layer(x)
        assert torch.equal(out, x)  # identity forward
        out.backward(upstream)
        assert layer.coefficient == pytest.approx(expected)
        assert torch.allclose(x.grad, -expected * upstream)
    assert warm_start_coefficient(5.0) == warm_start_coefficient(1.0)  # clipped past the ramp


def test_the_trainer_drives_the_reversal_coefficient_from_the_global_step(tmp_path):
    """The schedule follows `state.global_step`, not a call counter: a resumed run continues the ramp."""
    model = _toy_model(tmp_path)
    trainer = _toy_trainer(model, "dann", tmp_path, max_steps=40)
    trainer.state.max_steps, trainer.state.global_step = 40, 20
    trainer._sync_schedule()
    assert trainer.adapter.grl.coefficient == pytest.approx(warm_start_coefficient(0.5, 10.0))


# ------------------------------------------------------------------------------------------------------- the losses


def _features(n=64, dim=8, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("loss", [MultipleKernelMMD(), CorrelationAlignmentLoss()], ids=["mmd", "coral"])
def test_statistical_losses_vanish_on_identical_features_and_grow_with_a_shift(loss):
    f = _features()
    g = _features(seed=1)  # same distribution, other draws: small
    assert loss(f, f).item() == pytest.approx(0.0, abs=1e-6)
    small, large = loss(f, g + 0.5).item(), loss(f, g * 2.0 + 2.0).item()
    assert loss(f, g).item() < small < large


def _discriminator_accuracy(loss_module, f_s, f_t, extra=(), steps=150):
    """Trains the discriminator alone on fixed features; returns its final domain accuracy and loss."""
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        value = loss_module(f_s, f_t, *extra)
        value.backward()
        optimizer.step()
    loss_module.eval()
    with torch.no_grad():
        value = loss_module(f_s, f_t, *extra).item()
    return loss_module.domain_accuracy, value


@pytest.mark.parametrize("method", ["dann", "cdan"])
def test_adversarial_losses_cannot_tell_identical_domains_apart_but_can_shifted_ones(method):
    """The discriminator's best loss is log 2 (chance) on identical features and falls with a shift: the divergence
    it estimates, log 2 - loss, is minimal without a shift and grows with it."""
    torch.manual_seed(0)
    f = _features(n=64, dim=8)
    logits = torch.randn(64, 3, generator=torch.Generator().manual_seed(2))

    def make():
        torch.manual_seed(0)
        if method == "dann":
            return DomainAdversarialLoss(8, hidden_size=32)
        return ConditionalDomainAdversarialLoss(8, 3, hidden_size=32)

    extra = (logits, logits) if method == "cdan" else ()
    same_accuracy, same_loss = _discriminator_accuracy(make(), f, f.clone(), extra)
    shifted_accuracy, shifted_loss = _discriminator_accuracy(make(), f, f + 1.5, extra)
    assert same_loss == pytest.approx(math.log(2), abs=0.05) and same_accuracy <= 0.6
    assert shifted_loss < 0.3 and shifted_accuracy > 0.9


def test_cdan_uses_the_randomized_multilinear_map_for_wide_features():
    wide = ConditionalDomainAdversarialLoss(512, 10, hidden_size=16, randomized_dim=64)
    narrow = ConditionalDomainAdversarialLoss(16, 2, hidden_size=16)
    assert wide.randomized and wide.discriminator[0].in_features == 64
    assert not narrow.randomized and narrow.discriminator[0].in_features == 32
    f, g = torch.randn(4, 512), torch.softmax(torch.randn(4, 10), 1)
    assert wide.multilinear_map(f, g).shape == (4, 64)
    assert "random_f" in wide.state_dict()  # checkpointed: a resumed run keeps the same projection


def test_mcc_is_minimal_for_confident_predictions_and_grows_with_class_confusion():
    mcc = MinimumClassConfusionLoss(temperature=1.0)
    confident = torch.eye(4).repeat(8, 1) * 20.0
    mixed = confident * 0.1
    uniform = torch.zeros(32, 4)
    assert mcc(confident).item() < 1e-3 < mcc(mixed).item() < mcc(uniform).item()


def test_unsupervised_scores_prefer_confident_and_diverse_predictions():
    confident_diverse = torch.eye(4).repeat(8, 1) * 10.0
    collapsed = torch.zeros(32, 4)
    collapsed[:, 0] = 10.0  # confident, but one class for every row
    uncertain = torch.zeros(32, 4)
    good, bad, unsure = (unsupervised_scores(x) for x in (confident_diverse, collapsed, uncertain))
    assert good["target_entropy"] < unsure["target_entropy"]
    assert good["target_im"] > bad["target_im"] and good["target_im"] > unsure["target_im"]
    assert set(good) == {"target_entropy", "target_im", "target_snd"}


# --------------------------------------------------------------------------------------------- a shifted toy task


class ShiftedToy(torch.utils.data.Dataset):
    """Cached-feature rows: dimension 0 carries the class in both domains; dimension 1 is a shortcut in the source
    (±1.5 by class) that, in the target, reads +1.5 for every row, so a source-only classifier leaning on it fails."""

    def __init__(self, n: int, domain: str, seed: int, labels: bool = True):
        generator = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 32, generator=generator) * 0.5
        self.x[:, 0] += self.y * 2.0 - 1.0
        self.x[:, 1] += (self.y * 2.0 - 1.0) * 1.5 if domain == "source" else 1.5
        self.labels = labels

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        row = {"backbone_features_0": self.x[i]}
        if self.labels:
            row["labels"] = self.y[i]
        return row


def _toy_model(tmp_path):
    bert = tmp_path / "bert"
    if not (bert / "config.json").is_file():
        save_tiny_bert(bert)
    torch.manual_seed(0)
    return TransferForSequenceClassification.from_backbones(
        [BackboneSpec(str(bert))], num_labels=2, head="mlp", head_hidden_sizes=[16], freeze="backbone"
    )


def _toy_trainer(model, method, tmp_path, max_steps=200, **overrides):
    args = tiny_training_args(
        tmp_path / "out",
        max_steps=max_steps,
        learning_rate=1e-2,
        per_device_train_batch_size=32,
        remove_unused_columns=False,
        **overrides,
    )
    source = ShiftedToy(256, "source", seed=0)
    if method is None:
        return Trainer(model=model, args=args, train_dataset=source, data_collator=collate_cached)
    options = AdaptationArguments(adaptation=method, target_train_file="unused", discriminator_hidden_size=64)
    return AdaptationTrainer(
        model=model,
        args=args,
        train_dataset=source,
        data_collator=collate_cached,
        adapter=DomainAdapter(method, head_input_dim(model), 2, options),
        target_dataset=ShiftedToy(256, "target", seed=1, labels=False),
    )


def _target_accuracy(model):
    test = ShiftedToy(256, "target", seed=2)
    model.eval()
    with torch.no_grad():
        return (model(backbone_features_0=test.x).logits.argmax(-1) == test.y).float().mean().item()


@pytest.mark.slow
def test_dann_improves_target_accuracy_over_source_only_on_a_shifted_toy_task(tmp_path):
    accuracies = {}
    for method in (None, "dann"):
        model = _toy_model(tmp_path)
        _toy_trainer(model, method, tmp_path).train()
        accuracies[method] = _target_accuracy(model)
    assert accuracies["dann"] > accuracies[None] + 0.1, accuracies


def test_the_adapter_trains_but_stays_out_of_the_model(tmp_path):
    model = _toy_model(tmp_path)
    trainer = _toy_trainer(model, "dann", tmp_path, max_steps=4)
    before = {k: v.clone() for k, v in trainer.adapter.state_dict().items()}
    trainer.train()
    after = trainer.adapter.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert not any("discriminator" in key for key in reloaded.state_dict())
    assert set(reloaded.state_dict()) == set(model.state_dict())


# ---------------------------------------------------------------------------------------------------- the recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uda_data")
    fixtures.make_cifar10(root, n_train=48, n_test=16)
    fixtures.write_hub_layout(fixtures.cifar10(n_train=40, n_test=20, seed=1), root / "cifar10_target")
    fixtures.make_cifar100(root, n_train=40, n_test=10)
    fixtures.make_glue(root, tasks=("sst2", "stsb"), n=24)
    fixtures.write_hub_layout(fixtures.glue("sst2", n=24, seed=1), root / "sst2_target")
    return root


def run(argv) -> dict:
    return finetune.main([str(a) for a in argv] + COMMON)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


IMAGE = ["--backbone", "timm:test_resnet", "--random_init", "--do_train", "--do_eval"]


def test_recipe_adapts_reports_target_metrics_and_saves_a_plain_classifier(data, tmp_path):
    out = tmp_path / "dann"
    results = run(
        IMAGE
        + ["--dataset_name", data / "cifar10", "--target_dataset_name", data / "cifar10_target"]
        + ["--adaptation", "dann", "--adaptation_weight", "0.5", "--max_steps", "4", "--output_dir", out]
        + ["--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2"]
        + ["--metric_for_best_model", "target_snd", "--load_best_model_at_end", "--greater_is_better", "true"]
        + ["--logging_steps", "1"]
    )
    all_results = read_json(out / "all_results.json")
    for key in ("eval_accuracy", "eval_target_accuracy", "eval_target_entropy", "eval_target_im", "eval_target_snd"):
        assert key in all_results and key in results, key
    assert (out / "checkpoint-2" / ADAPTER_WEIGHTS_NAME).is_file()
    state = read_json(out / "trainer_state.json")
    assert state["best_metric"] is not None  # picked by the unsupervised score
    logs = [entry for entry in state["log_history"] if "adaptation_loss" in entry]
    assert logs and all("grl_coefficient" in entry for entry in logs)
    model = AutoModelForImageClassification.from_pretrained(out)
    assert not any("discriminator" in key for key in model.state_dict())

    from PIL import Image
    from transformers import pipeline

    predictions = pipeline("image-classification", model=str(out))(Image.new("RGB", (32, 32), "red"))
    assert predictions[0]["label"] in fixtures.CIFAR10_LABELS


def test_recipe_adapts_frozen_backbones_on_cached_features(data, tmp_path, caplog):
    out = tmp_path / "cached"
    run(
        IMAGE
        + ["--freeze", "backbone", "--no_augmentation", "--head", "mlp", "--head_hidden_sizes", "8"]
        + ["--dataset_name", data / "cifar10", "--target_dataset_name", data / "cifar10_target"]
        + ["--adaptation", "mmd", "--max_steps", "3", "--output_dir", out]
    )
    assert "eval_target_accuracy" in read_json(out / "all_results.json")
    assert "Cached backbone features: on" in caplog.text


def test_recipe_adapts_text_and_fused_backbones(data, tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    for method, backbones in (("cdan", [bert]), ("coral", [bert, bert])):
        out = tmp_path / method
        run(
            ["--backbone", *backbones, "--do_train", "--do_eval", "--fusion_dim", "8"]
            + ["--dataset_name", data / "glue", "--task_name", "sst2", "--target_dataset_name", data / "sst2_target"]
            + ["--adaptation", method, "--max_steps", "3", "--output_dir", out]
        )
        assert "eval_target_accuracy" in read_json(out / "all_results.json"), method


def _unlabelled_target(root: Path, layout: str) -> list[str]:
    """Target training data without any label: a parquet of images only, a CSV of image paths only, or a flat
    image folder (no class subfolders). Returns the target flags."""
    train = fixtures.cifar10(n_train=24, n_test=2, seed=2)["train"]
    root.mkdir(parents=True, exist_ok=True)
    if layout == "parquet":
        train.remove_columns("label").to_parquet(root / "target.parquet")
        return ["--target_train_file", root / "target.parquet"]
    folder = root / "images"
    folder.mkdir()
    for i, image in enumerate(train["img"]):
        image.save(folder / f"{i}.png")
    if layout == "csv":
        (root / "target.csv").write_text("img\n" + "".join(f"images/{i}.png\n" for i in range(len(train))))
        return ["--target_train_file", root / "target.csv"]
    return ["--target_train_dir", folder]


@pytest.mark.parametrize("layout", ["parquet", "csv", "image_folder"])
def test_recipe_adapts_to_target_data_without_any_label(data, tmp_path, layout):
    out = tmp_path / "out"
    run(
        IMAGE
        + ["--dataset_name", data / "cifar10", *_unlabelled_target(tmp_path / "target", layout)]
        + ["--adaptation", "dann", "--max_steps", "2", "--output_dir", out]
    )
    results = read_json(out / "all_results.json")
    assert "eval_accuracy" in results and "eval_target_entropy" in results
    assert "eval_target_accuracy" not in results  # no labelled target data: nothing to report
    assert AutoModelForImageClassification.from_pretrained(out).config.num_labels == 10


def test_recipe_adapts_text_to_a_target_file_of_sentences_only(data, tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    target = tmp_path / "target.csv"
    target.write_text("sentence\n" + "".join(f"{fixtures.sentence(np.random.default_rng(i))}\n" for i in range(12)))
    out = tmp_path / "out"
    run(
        ["--backbone", bert, "--do_train", "--do_eval", "--dataset_name", data / "glue", "--task_name", "sst2"]
        + ["--target_train_file", target, "--adaptation", "coral", "--max_steps", "2", "--output_dir", out]
    )
    assert "eval_target_snd" in read_json(out / "all_results.json")


def test_target_train_labels_are_never_used_and_missing_ones_keep_their_rows(data, tmp_path):
    # Half the target rows are unlabelled (-1): all are target training data, and no label reaches training.
    target = fixtures.cifar10(n_train=20, n_test=10, seed=3)
    target["train"] = target["train"].map(lambda row, i: {"label": -1 if i % 2 else row["label"]}, with_indices=True)
    fixtures.write_hub_layout(target, tmp_path / "target")
    args = AdaptationArguments(adaptation="dann", target_dataset_name=str(tmp_path / "target"))
    data_args = DataTrainingArguments(dataset_name=str(data / "cifar10"))
    _, task = load_raw_datasets(data_args)
    loaded = load_target_datasets(args, data_args, task)
    assert len(loaded.train) == 20 and loaded.eval is not None and len(loaded.eval) == 10
    prepared = prepare_target_datasets(loaded, [fixtures.image_backbone()], None, data_args)
    assert "labels" not in prepared.train.column_names and "labels" in prepared.eval.column_names


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--adaptation", "dann"], "needs unlabelled target data"),
        (["--adaptation", "gan", "--target_dataset_name", "x"], "--adaptation 'gan' is unknown"),
        (["--adaptation", "dann", "--target_dataset_name", "{data}/cifar100"], "same label set"),
        (
            ["--adaptation", "dann", "--target_dataset_name", "{data}/cifar10_target", "--target_image_column_name"]
            + ["picture"],
            "'picture' is not a column",
        ),
        (
            ["--adaptation", "dann", "--target_dataset_name", "{data}/cifar10_target"]
            + ["--metric_for_best_model", "target_accuracy"],
            "target labels must not choose the checkpoint",
        ),
    ],
    ids=["no-target", "unknown-method", "label-set", "missing-column", "target-labels-pick"],
)
def test_bad_adaptation_inputs_fail_before_training(data, tmp_path, flags, message):
    flags = [str(f).format(data=data) for f in flags]
    with pytest.raises(ValueError, match=message):
        run(IMAGE + ["--dataset_name", data / "cifar10", "--max_steps", "1", "--output_dir", tmp_path] + flags)
    assert not (tmp_path / "model.safetensors").exists()


def test_target_data_without_a_method_is_refused():
    with pytest.raises(ValueError, match="no --adaptation method"):
        AdaptationArguments(target_dataset_name="digits")
    with pytest.raises(ValueError, match="--adaptation_schedule 'linear'"):
        AdaptationArguments(adaptation="mmd", target_dataset_name="digits", adaptation_schedule="linear")


@pytest.mark.parametrize("method", ["cdan", "mcc"])
def test_class_probability_methods_are_refused_on_regression(data, tmp_path, method):
    bert = save_tiny_bert(tmp_path / "bert")
    with pytest.raises(ValueError, match=f"--adaptation {method} reads class probabilities"):
        run(
            ["--backbone", bert, "--do_train", "--dataset_name", data / "glue", "--task_name", "stsb"]
            + ["--adaptation", method, "--target_dataset_name", data / "sst2_target", "--output_dir", tmp_path]
        )


# ---------------------------------------------------------------------------------------- processes and resume


def _script(args, launcher=None, **kwargs):
    command = (launcher or [sys.executable]) + [str(SCRIPT)] + [str(a) for a in args] + COMMON
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_accelerate_launch_two_processes_adapts_as_one_cpu_ddp_job(data, tmp_path):
    out = tmp_path / "ddp"
    result = _script(
        IMAGE
        + ["--dataset_name", data / "cifar10", "--target_dataset_name", data / "cifar10_target"]
        + ["--adaptation", "dann", "--max_steps", "3", "--output_dir", out, "--save_strategy", "steps"]
        + ["--save_steps", "3"],
        launcher=fixtures.ACCELERATE_TWO_PROCESSES,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "world size: 2" in log and "world size: 1" not in log
    assert read_json(out / "trainer_state.json")["global_step"] == 3
    assert "eval_target_accuracy" in read_json(out / "all_results.json")
    assert (out / "checkpoint-3" / ADAPTER_WEIGHTS_NAME).is_file()


@pytest.mark.slow
def test_killed_adaptation_run_resumes_to_the_same_metrics(data, tmp_path):
    common = IMAGE + ["--dataset_name", data / "cifar10", "--target_dataset_name", data / "cifar10_target"]
    common += ["--adaptation", "cdan", "--no_augmentation", "--max_steps", "12", "--save_strategy", "steps"]
    common += ["--save_steps", "2", "--seed", "3", "--learning_rate", "0.01", "--dataloader_num_workers", "0"]
    reference = _script(common + ["--output_dir", tmp_path / "reference"], timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    fixtures.kill_after([sys.executable, SCRIPT, *common, "--output_dir", out, *COMMON], out / "checkpoint-4")
    assert (out / "checkpoint-4").exists() and not (out / "checkpoint-12").exists(), "killed too late"
    checkpoint = finetune.last_complete_checkpoint(str(out))
    assert checkpoint is not None and (Path(checkpoint) / ADAPTER_WEIGHTS_NAME).is_file()
    resumed = _script(common + ["--output_dir", out, "--resume_from_checkpoint", checkpoint], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = read_json(tmp_path / "reference" / "all_results.json")
    got = read_json(out / "all_results.json")
    for key in ("eval_loss", "eval_accuracy", "eval_target_accuracy", "eval_target_snd"):
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


# ---------------------------------------------------------------------------------------------------- the card


def test_the_pushed_card_names_the_adaptation_and_reports_source_and_target_results(data, hub_server, tmp_path):
    from huggingface_hub import ModelCard

    out, repo_id = tmp_path / "out", "test-user/uda-card"
    run(
        IMAGE
        + ["--dataset_name", data / "cifar10", "--target_dataset_name", data / "cifar10_target"]
        + ["--adaptation", "cdan", "--adaptation_weight", "0.3", "--max_steps", "2", "--output_dir", out]
        + ["--push_to_hub", "--hub_model_id", repo_id]
    )
    all_results = read_json(out / "all_results.json")
    card = ModelCard(hub_server.repo(repo_id).head().files["README.md"].decode())
    by_data = {}
    for result in card.data.eval_results:
        by_data.setdefault((result.dataset_name, result.dataset_split), {})[result.metric_type] = result.metric_value
    assert by_data[("cifar10 (local)", "validation")]["accuracy"] == all_results["eval_accuracy"]
    target = by_data[("cifar10_target (local)", "test")]  # the labelled target split, a second model-index result
    assert target["accuracy"] == all_results["eval_target_accuracy"]
    assert not {"entropy", "target_entropy", "snd"} & set(target)  # scores without labels are no results
    assert not any(name.startswith("target_") for metrics in by_data.values() for name in metrics)
    section = card.text.split("### Domain adaptation")[1].split("## Intended uses")[0]
    for shown in ("`cdan`", "CDAN", "**λ (adaptation weight):** 0.3", "cifar10 (local)", "cifar10_target (local)"):
        assert shown in section, shown
    assert "| target_accuracy |" in section and "| target_snd |" in section and "entropy_conditioning" in section
    assert str(data) not in card.content  # local paths stay unpublished
