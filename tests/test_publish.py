"""Publishing end to end: tiny models trained with a real Trainer, pushed to the loopback Hub, reloaded elsewhere.

Each model is trained and published once per module (fixtures); two fresh interpreters then load everything that was
pushed, one with hf_transfer installed and one where `import hf_transfer` fails, and the tests compare what they saw
with what the model gave before the push.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fixtures
import numpy as np
import PIL.Image
import pytest
import torch
from huggingface_hub import ModelCard
from modeling_utils import SeparableImages, SeparableText, save_tiny_bert, tiny_training_args
from safetensors.torch import load
from transformers import AutoImageProcessor, AutoTokenizer, Trainer

from hf_transfer import TransferForImageClassification, TransferForSequenceClassification
from hf_transfer.data import DataTrainingArguments, TaskInfo
from hf_transfer.hub import HubPushError, export_timm, publish, publish_model, training_hyperparameters
from hf_transfer.metrics import build_compute_metrics
from hf_transfer.processing import load_processors, save_processors

REPO_ROOT = Path(__file__).resolve().parents[1]
finetune = fixtures.load_recipe_script()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_LABELS = ["dark", "grey", "bright"]
TEXT_LABELS = ["negative", "positive"]
PIPELINE_TEXT = "w3 w60 w61 w70"


@dataclass
class ModelArguments:
    """The recipe's model flags that a card reports (a stand-in for `recipes/finetune.py`'s dataclass)."""

    backbone: list[str]
    freeze: str = "none"
    head: str = "linear"
    head_hidden_sizes: list[int] | None = None
    fusion: str = "concat"
    fusion_dim: int = 256
    pooling: str = "auto"
    backbone_weights: list[str] | None = None


@dataclass
class RunResults:
    """What a run holds in memory when it publishes: its metrics and the main eval split's predictions."""

    metrics: dict
    predictions: object


@dataclass
class PublishedRun:
    """A trained model, its run folder, and what was pushed."""

    trainer: Trainer
    task: TaskInfo
    model_args: ModelArguments
    data_args: DataTrainingArguments
    run_results: RunResults
    output_dir: Path
    repo_id: str
    inputs: dict[str, torch.Tensor]
    commits: list[str] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)  # on `inputs`, before each push
    pipeline_input: object = None
    expected_top: tuple[str, float] | None = None  # the model's own top label and softmax score
    timm_repo_id: str | None = None


def _unique_repo(prefix: str) -> str:
    return f"test-user/{prefix}-{uuid.uuid4().hex[:8]}"


def _train_and_evaluate(model, train, evaluation, output_dir: Path, task: TaskInfo) -> tuple[Trainer, RunResults]:
    """What the recipe does: train (checkpoints and all), save, save the processors, predict the eval split (its
    metrics and predictions), save the metrics."""
    args = tiny_training_args(
        output_dir,
        max_steps=4,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
    )
    compute_metrics = build_compute_metrics(problem_type=task.problem_type, num_labels=len(task.label_list))
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation, compute_metrics=compute_metrics
    )
    train_metrics = trainer.train().metrics
    trainer.save_model()
    trainer.save_metrics("train", dict(train_metrics, train_samples=len(train)))
    save_processors(load_processors(model.config), output_dir, model.config)
    output = trainer.predict(evaluation, metric_key_prefix="eval")
    trainer.log(output.metrics)
    metrics = dict(output.metrics, eval_samples=len(evaluation))
    trainer.save_metrics("eval", metrics)
    return trainer, RunResults(dict(train_metrics, train_samples=len(train), **metrics), output)


def _publish(run: PublishedRun, **kwargs):
    """Publishes as the recipe does: what the run holds, the recipe's hyperparameters."""
    hyperparameters = training_hyperparameters(run.trainer.args)
    hyperparameters.update(finetune.card_hyperparameters(run.model_args, run.data_args, run.task, 1))
    return publish(
        run.trainer,
        run.task,
        metrics=run.run_results.metrics,
        predictions=run.run_results.predictions,
        hyperparameters=hyperparameters,
        **kwargs,
    )


def _eval_logits(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def _top(model, inputs) -> tuple[str, float]:
    probabilities = _eval_logits(model, inputs).softmax(-1)[0]
    index = int(probabilities.argmax())
    return model.config.id2label[index], float(probabilities[index])


@pytest.fixture(scope="module")
def image_run(hub_server, tmp_path_factory) -> PublishedRun:
    """timm `test_resnet` (random init) with a linear head on 3 labels, published twice; the first push also
    exports to timm."""
    output_dir = tmp_path_factory.mktemp("image") / "run"
    task = TaskInfo(
        modality="image",
        problem_type="single_label_classification",
        label_column="label",
        label_list=IMAGE_LABELS,
        image_column="img",
        eval_splits=["validation"],
        dataset_name="test-user/separable-images",
    )
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones(
        "timm:test_resnet", pretrained=False, num_labels=3, id2label=task.id2label, label2id=task.label2id
    )
    trainer, run_results = _train_and_evaluate(
        model, SeparableImages(32, num_labels=3), SeparableImages(12, num_labels=3, seed=1), output_dir, task
    )
    run = PublishedRun(
        trainer=trainer,
        task=task,
        model_args=ModelArguments(backbone=["timm:test_resnet"]),
        data_args=DataTrainingArguments(dataset_name=task.dataset_name),
        run_results=run_results,
        output_dir=output_dir,
        repo_id=_unique_repo("image"),
        timm_repo_id=_unique_repo("image-timm"),
        inputs={"pixel_values": torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))},
        pipeline_input=PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)),
    )
    run.logits.append(_eval_logits(model, run.inputs))
    first = _publish(run, repo_id=run.repo_id, token=hub_server.token, timm_repo_id=run.timm_repo_id)
    run.commits.append(first.oid)

    with torch.no_grad():  # a second version of the model: the head's decisions reversed
        model.head.layers[-1].weight.neg_()
    run.logits.append(_eval_logits(model, run.inputs))
    processed = AutoImageProcessor.from_pretrained(output_dir)(run.pipeline_input, return_tensors="pt")
    run.expected_top = _top(model, dict(processed))  # what `main` should answer
    second = _publish(run, repo_id=run.repo_id, token=hub_server.token)
    run.commits.append(second.oid)
    return run


@pytest.fixture(scope="module")
def text_run(hub_server, tmp_path_factory) -> PublishedRun:
    """A 2-layer BERT with its tokenizer, 2 labels, published once."""
    root = tmp_path_factory.mktemp("text")
    output_dir = root / "run"
    task = TaskInfo(
        modality="text",
        problem_type="single_label_classification",
        label_column="label",
        label_list=TEXT_LABELS,
        text_columns=["sentence"],
        eval_splits=["validation"],
        dataset_name="test-user/separable-text",
    )
    torch.manual_seed(0)
    model = TransferForSequenceClassification.from_backbones(
        save_tiny_bert(root / "bert"), num_labels=2, id2label=task.id2label, label2id=task.label2id
    )
    trainer, run_results = _train_and_evaluate(model, SeparableText(32), SeparableText(12, seed=1), output_dir, task)
    run = PublishedRun(
        trainer=trainer,
        task=task,
        model_args=ModelArguments(backbone=[str(root / "bert")]),
        data_args=DataTrainingArguments(dataset_name=task.dataset_name, max_seq_length=16),
        run_results=run_results,
        output_dir=output_dir,
        repo_id=_unique_repo("text"),
        inputs={"input_ids": SeparableText(2, seed=2).input_ids, "attention_mask": torch.ones(2, 8, dtype=torch.long)},
        pipeline_input=PIPELINE_TEXT,
    )
    run.expected_top = _top(model, dict(AutoTokenizer.from_pretrained(output_dir)(PIPELINE_TEXT, return_tensors="pt")))
    run.logits.append(_eval_logits(model, run.inputs))
    run.commits.append(_publish(run, repo_id=run.repo_id, token=hub_server.token).oid)
    return run


# ---------------------------------------------------------------------------------------------- fresh processes


def _run_fresh(script: str, tmp_path: Path, *, without_hf_transfer: bool, **data) -> dict:
    """Runs `script` in a new interpreter (the loopback Hub's environment is inherited) and returns what it saved.

    The script finds `DATA` (what the test passed, via torch.save) and fills `RESULTS` (saved back).
    """
    data_file, results_file = tmp_path / "data.pt", tmp_path / "results.pt"
    torch.save(data, data_file)
    block = (
        # `import hf_transfer` raises ImportError, as if it were not installed (the editable install's finder would
        # win over any PYTHONPATH trick).
        'import sys\nsys.modules["hf_transfer"] = None\n'
        if without_hf_transfer
        else "import hf_transfer  # registers the Auto classes\n"
    )
    program = (
        block
        + textwrap.dedent(
            f"""
            import torch
            DATA = torch.load({str(data_file)!r}, weights_only=False)
            RESULTS = {{}}
            """
        )
        + textwrap.dedent(script)
        + f"\ntorch.save(RESULTS, {str(results_file)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(results_file, weights_only=False)


@pytest.fixture(scope="module")
def loaded_with_hf_transfer(image_run, text_run, tmp_path_factory) -> dict:
    """Auto classes and pipelines, in a fresh process with hf_transfer installed."""
    script = """
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, pipeline
        import hf_transfer

        for key, auto_class in (("image", AutoModelForImageClassification), ("text", AutoModelForSequenceClassification)):
            run = DATA[key]
            for revision in run["revisions"]:
                model = auto_class.from_pretrained(run["repo_id"], revision=revision).eval()
                with torch.no_grad():
                    RESULTS[(key, revision)] = model(**run["inputs"]).logits
            RESULTS[(key, "class")] = type(model).__name__
            classifier = pipeline(run["task"], model=run["repo_id"])
            top = classifier(run["pipeline_input"])
            top = top[0] if isinstance(top, list) else top
            RESULTS[(key, "pipeline")] = (top["label"], top["score"])
    """
    return _run_fresh(
        script,
        tmp_path_factory.mktemp("fresh_with"),
        without_hf_transfer=False,
        image=_fresh_data(image_run, "image-classification", revisions=["main", image_run.commits[0]]),
        text=_fresh_data(text_run, "text-classification", revisions=["main"]),
    )


@pytest.fixture(scope="module")
def loaded_without_hf_transfer(image_run, text_run, tmp_path_factory) -> dict:
    """Remote code, the timm export through stock transformers and through timm, where hf_transfer is absent."""
    script = """
        try:
            import hf_transfer  # noqa: F401
            raise SystemExit("hf_transfer should not be importable here")
        except ImportError:
            pass
        import timm
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

        for key, auto_class in (("image", AutoModelForImageClassification), ("text", AutoModelForSequenceClassification)):
            run = DATA[key]
            model = auto_class.from_pretrained(run["repo_id"], trust_remote_code=True).eval()
            RESULTS[(key, "module")] = type(model).__module__
            with torch.no_grad():
                RESULTS[(key, "remote code")] = model(**run["inputs"]).logits

        run = DATA["image"]
        exported = AutoModelForImageClassification.from_pretrained(run["timm_repo_id"]).eval()
        RESULTS["timm export", "class"] = type(exported).__name__
        RESULTS["timm export", "id2label"] = exported.config.id2label
        native = timm.create_model("hf-hub:" + run["timm_repo_id"], pretrained=True).eval()
        RESULTS["timm export", "label_names"] = list(native.pretrained_cfg["label_names"])
        with torch.no_grad():
            RESULTS["timm export", "transformers"] = exported(**run["inputs"]).logits
            RESULTS["timm export", "timm"] = native(run["inputs"]["pixel_values"])
        RESULTS["modules"] = sorted(
            name for name, module in sys.modules.items() if module is not None and name.split(".")[0] == "hf_transfer"
        )
    """
    return _run_fresh(
        script,
        tmp_path_factory.mktemp("fresh_without"),
        without_hf_transfer=True,
        image=_fresh_data(image_run, "image-classification", revisions=["main"]),
        text=_fresh_data(text_run, "text-classification", revisions=["main"]),
    )


def _fresh_data(run: PublishedRun, task: str, revisions: list[str]) -> dict:
    return {
        "repo_id": run.repo_id,
        "timm_repo_id": run.timm_repo_id,
        "inputs": run.inputs,
        "revisions": revisions,
        "task": task,
        "pipeline_input": run.pipeline_input,
    }


# ---------------------------------------------------------------------------------------------- reloading


def test_published_models_reload_with_the_auto_classes_and_give_the_same_logits(
    image_run, text_run, loaded_with_hf_transfer
):
    assert loaded_with_hf_transfer["image", "class"] == "TransferForImageClassification"
    assert loaded_with_hf_transfer["text", "class"] == "TransferForSequenceClassification"
    assert torch.equal(loaded_with_hf_transfer["image", "main"], image_run.logits[-1])
    assert torch.equal(loaded_with_hf_transfer["text", "main"], text_run.logits[-1])


def test_published_models_load_as_remote_code_where_hf_transfer_is_absent(
    image_run, text_run, loaded_without_hf_transfer
):
    for key, run in (("image", image_run), ("text", text_run)):
        assert loaded_without_hf_transfer[key, "module"].startswith("transformers_modules"), key
        assert torch.equal(loaded_without_hf_transfer[key, "remote code"], run.logits[-1]), key
    assert loaded_without_hf_transfer["modules"] == []


def test_pipelines_give_the_models_top_label_and_score(image_run, text_run, loaded_with_hf_transfer):
    for key, run in (("image", image_run), ("text", text_run)):
        label, score = loaded_with_hf_transfer[key, "pipeline"]
        assert label == run.expected_top[0], key
        assert score == pytest.approx(run.expected_top[1], abs=1e-6), key


def test_pushing_again_makes_a_new_commit_and_the_first_stays_loadable(image_run, hub_server, loaded_with_hf_transfer):
    repo = hub_server.repo(image_run.repo_id)
    assert [c.oid for c in repo.commits[1:]] == image_run.commits  # after the Hub's "initial commit"
    assert repo.branches["main"] == image_run.commits[-1]
    assert not torch.equal(image_run.logits[0], image_run.logits[1])
    assert torch.equal(loaded_with_hf_transfer["image", image_run.commits[0]], image_run.logits[0])
    assert torch.equal(loaded_with_hf_transfer["image", "main"], image_run.logits[1])


# ---------------------------------------------------------------------------------------------- what was pushed


def test_pushed_files_are_the_model_its_processor_code_plots_and_card_only(image_run, hub_server):
    local = {p.relative_to(image_run.output_dir).as_posix() for p in image_run.output_dir.rglob("*") if p.is_file()}
    assert any(name.startswith("checkpoint-") for name in local) and "training_args.bin" in local  # all there

    files = hub_server.repo(image_run.repo_id).files_at(image_run.commits[0])
    assert {
        "model.safetensors",
        "config.json",
        "configuration_transfer.py",
        "modeling_transfer.py",
        "preprocessor_config.json",
        "README.md",
        "training_curve.png",
        "confusion_matrix.png",
        "all_results.json",
        "eval_results.json",
    } <= set(files)
    assert not [
        name
        for name in files
        if name.startswith(("checkpoint-", "timm_export/", "runs/"))
        or name.endswith((".bin", ".pt", ".pth", ".pkl"))
        or "optimizer" in name
    ]
    assert files["training_curve.png"].startswith(PNG_MAGIC)
    assert files["confusion_matrix.png"].startswith(PNG_MAGIC)
    assert not [name for name, content in files.items() if hub_server.token.encode() in content]
    assert json.loads(files["config.json"])["auto_map"]["AutoModelForImageClassification"].startswith(
        "modeling_transfer."
    )


def test_card_holds_the_runs_real_numbers(image_run):
    eval_results = json.loads((image_run.output_dir / "eval_results.json").read_text())
    card = ModelCard.load(image_run.repo_id)  # from the loopback Hub

    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    metrics = ("accuracy", "f1", "precision", "recall")  # the loss and run statistics stay out of model-index
    expected = {name: eval_results[f"eval_{name}"] for name in metrics}
    assert results == expected
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert card.data.datasets == ["test-user/separable-images"]
    assert card.data.pipeline_tag == "image-classification"

    text = card.text
    for row in (
        "| learning_rate | 0.005 |",
        "| total_train_batch_size | 16 |",
        "| world_size | 1 |",
        "| training_steps | 4 |",
        "| lr_scheduler_type | linear |",
        "| seed | 0 |",
        "| mixed_precision | no |",
        "| freeze | none |",
        "| head | linear |",
    ):
        assert row in text, row
    assert "| optimizer | adamw_torch" in text
    assert "fusion" not in text.split("### Training hyperparameters")[1].split("##")[0]  # one backbone
    assert "- **train split:** 32 examples" in text and "- **validation split:** 12 examples" in text
    assert f"| loss | {eval_results['eval_loss']:.4f} |" in text
    assert "![training curve](training_curve.png)" in text and "![confusion matrix](confusion_matrix.png)" in text


def test_publish_takes_what_the_run_holds_and_runs_the_model_no_more(image_run, hub_server, monkeypatch):
    def another_pass(*args, **kwargs):
        raise AssertionError("publish must not run the model over the data again")

    monkeypatch.setattr(image_run.trainer, "predict", another_pass)
    monkeypatch.setattr(image_run.trainer, "evaluate", another_pass)
    repo_id = _unique_repo("in-memory")
    publish(
        image_run.trainer,
        image_run.task,
        repo_id=repo_id,
        token=hub_server.token,
        metrics={"eval_accuracy": 0.123, "eval_samples": 12},  # not what eval_results.json holds: nothing is read
        predictions=image_run.run_results.predictions,
        hyperparameters={"learning_rate": 0.5},
    )
    files = hub_server.repo(repo_id).head().files
    readme = files["README.md"].decode()
    assert "| accuracy | 0.1230 |" in readme and "| learning_rate | 0.5 |" in readme
    assert files["confusion_matrix.png"].startswith(PNG_MAGIC)


def test_card_of_the_first_push_points_to_the_timm_export(image_run, hub_server):
    card = ModelCard(hub_server.repo(image_run.repo_id).files_at(image_run.commits[0])["README.md"].decode())
    assert f'timm.create_model("hf-hub:{image_run.timm_repo_id}", pretrained=True)' in card.text
    assert f"[{image_run.timm_repo_id}](https://huggingface.co/{image_run.timm_repo_id})" in card.text


def test_text_card_reports_the_sequence_length_and_hides_local_paths(text_run, hub_server):
    readme = hub_server.repo(text_run.repo_id).head().files["README.md"].decode()
    assert "| max_seq_length | 16 |" in readme
    assert str(text_run.output_dir.parent) not in readme  # the local backbone path
    assert 'AutoModelForSequenceClassification.from_pretrained("' + text_run.repo_id in readme


def test_publish_model_from_python_saves_everything_and_reports_learned_fusion_weights(hub_server, tmp_path):
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=2, fusion="weighted_sum", fusion_dim=16
    )
    with torch.no_grad():
        model.transfer.fusion.fusion_logits.copy_(torch.tensor([1.0, 0.0]))
    repo_id = _unique_repo("python")

    commit = publish_model(
        model, tmp_path / "run", repo_id=repo_id, token=hub_server.token, eval_results={"eval_accuracy": 0.75}
    )

    files = hub_server.repo(repo_id).files_at(commit.oid)
    assert {"model.safetensors", "config.json", "modeling_transfer.py", "preprocessor_config.json"} <= set(files)
    readme = files["README.md"].decode()
    assert "| 0:timm:test_resnet | 0.7311 |" in readme and "| 1:timm:test_vit | 0.2689 |" in readme
    assert hub_server.repo(repo_id).commit(commit.oid).title == (
        "Upload model trained with hf_transfer (accuracy 0.7500 on validation)"
    )


# ---------------------------------------------------------------------------------------------- timm export


def test_timm_export_is_timms_own_format(image_run, hub_server):
    files = hub_server.repo(image_run.timm_repo_id).head().files
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md"}
    config = json.loads(files["config.json"])
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 3
    assert config["num_features"] == 96 and config["global_pool"] == "avg"
    assert config["label_names"] == config["pretrained_cfg"]["label_names"] == IMAGE_LABELS
    assert "num_classes" not in config.get("model_args", {})  # transformers' TimmWrapper passes it itself
    weights = load(files["model.safetensors"])
    backbone = image_run.trainer.model.transfer.backbones[0].model.state_dict()
    assert set(weights) == set(backbone) | {"fc.weight", "fc.bias"}
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "timm" and "timm" in card.data.tags
    assert f"[{image_run.repo_id}](https://huggingface.co/{image_run.repo_id})" in card.text


def test_timm_export_loads_without_hf_transfer_and_gives_the_same_logits(image_run, loaded_without_hf_transfer):
    first = image_run.logits[0]  # the export was pushed with the first version
    assert loaded_without_hf_transfer["timm export", "class"] == "TimmWrapperForImageClassification"
    assert loaded_without_hf_transfer["timm export", "id2label"] == dict(enumerate(IMAGE_LABELS))
    assert loaded_without_hf_transfer["timm export", "label_names"] == IMAGE_LABELS
    torch.testing.assert_close(loaded_without_hf_transfer["timm export", "transformers"], first, rtol=0, atol=1e-6)
    torch.testing.assert_close(loaded_without_hf_transfer["timm export", "timm"], first, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("backbones", "options", "reason"),
    [
        (["timm:test_resnet", "timm:test_vit"], {"fusion_dim": 16}, "fuses 2 backbones"),
        ("timm:test_resnet", {"head": "mlp", "head_hidden_sizes": [8]}, r"head is an MLP \(hidden sizes \[8\]\)"),
    ],
)
def test_timm_export_refuses_models_that_are_not_one_timm_backbone_with_a_linear_head(
    backbones, options, reason, tmp_path
):
    model = TransferForImageClassification.from_backbones(backbones, pretrained=False, num_labels=2, **options)
    with pytest.raises(ValueError, match=f"Cannot export this model as a plain timm model: .*{reason}"):
        export_timm(model, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_timm_export_refuses_a_transformers_backbone(text_run, tmp_path):
    with pytest.raises(ValueError, match=r"backbone '.*bert' is a transformers model, not a timm one"):
        export_timm(text_run.trainer.model, tmp_path / "export")


def test_publish_with_an_impossible_timm_export_fails_before_writing_or_pushing(hub_server, tmp_path):
    model = TransferForImageClassification.from_backbones(
        "timm:test_resnet", pretrained=False, num_labels=2, head="mlp", head_hidden_sizes=[8]
    )
    repo_id = _unique_repo("no-timm")
    with pytest.raises(ValueError, match="plain timm model"):
        publish_model(model, tmp_path / "run", repo_id=repo_id, token=hub_server.token, timm_repo_id=repo_id + "-timm")
    assert not (tmp_path / "run").exists()
    assert ("model", repo_id) not in hub_server.repos


# ---------------------------------------------------------------------------------------------- failure


def test_failed_push_keeps_the_run_and_names_the_retry_command(image_run, hub_server, monkeypatch):
    folder = image_run.output_dir
    before = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    repo_id = _unique_repo("outage")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the client backs off between retries of a 500

    with hub_server.failing("commit", 500), pytest.raises(HubPushError) as info:
        _publish(image_run, repo_id=repo_id, token=hub_server.token)

    after = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert set(before) == set(after)
    # The card names the new repo and the modeling code is copied afresh from the package; the rest is as it was.
    changed = sorted(name for name in before if before[name] != after[name] and not name.endswith(".py"))
    assert changed == ["README.md"]
    message = str(info.value)
    assert info.value.retry_command in message and "push_folder_to_hub" in info.value.retry_command
    assert str(folder.resolve()) in info.value.retry_command and repo_id in info.value.retry_command
    assert "intact" in message and hub_server.token not in message
    assert [c.title for c in hub_server.repo(repo_id).commits] == ["initial commit"]
