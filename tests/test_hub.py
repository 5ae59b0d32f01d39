"""Publishing glue: fail-fast checks, the model card, the plots, secrets, and the push against the loopback Hub."""

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, constants
from transformers import BertConfig, BertForSequenceClassification, PretrainedConfig, TrainingArguments

from hf_transfer import hub
from hf_transfer.hub import (
    HubAuthError,
    HubPushError,
    check_push_target,
    files_to_upload,
    find_secret_in_files,
    plot_confusion_matrix,
    plot_training_curve,
    push_folder_to_hub,
    remove_secrets_from_args,
    render_model_card,
    write_model_card,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _unique_repo(prefix: str) -> str:
    return f"test-user/{prefix}-{uuid.uuid4().hex[:8]}"


def _two_backbone_config() -> PretrainedConfig:
    return PretrainedConfig(
        backbones=[
            {
                "source": "resnet18.a1_in1k",
                "library": "timm",
                "modality": "image",
                "pooling": "avg",
                "freeze": "backbone",
            },
            {"source": "timm:resnet18", "library": "timm", "modality": "image", "pooling": "avg", "freeze": 2},
            {
                "source": "google/vit-base-patch16-224",
                "library": "transformers",
                "modality": "image",
                "pooling": "cls",
                "freeze": "none",
            },
        ],
        fusion="weighted_sum",
        head="mlp",
        head_hidden_sizes=[64],
        id2label={i: f"class_{i}" for i in range(10)},
        problem_type="single_label_classification",
    )


def _render(config=None, **overrides) -> ModelCard:
    kwargs = dict(
        repo_id="test-user/fused-cifar10",
        task="image-classification",
        dataset_name="uoft-cs/cifar10",
        dataset_splits={"train": 45000, "validation": 5000},
        hyperparameters={"learning_rate": 5e-5, "num_train_epochs": 3},
        eval_results={
            "eval_accuracy": 0.9123,
            "eval_f1": 0.9001,
            "eval_loss": 0.31,
            "eval_runtime": 2.5,
            "epoch": 3.0,
        },
        fusion_weights={"resnet18.a1_in1k": 0.25, "timm:resnet18": 0.25, "google/vit-base-patch16-224": 0.5},
        has_training_curve=True,
        has_confusion_matrix=True,
        license="apache-2.0",
    )
    kwargs.update(overrides)
    return render_model_card(config or _two_backbone_config(), **kwargs)


# ---------------------------------------------------------------------------------------------------- the card


def test_the_wheel_ships_the_one_copy_of_each_card_template_and_the_metric_modules(tmp_path):
    """The templates live in the package only (model_cards/ points at them); the wheel must carry them."""
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "hf_transfer", source / "hf_transfer", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, source]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for template in ("transfer_model_card.md", "timm_model_card.md"):
        assert f"hf_transfer/model_cards/{template}" in shipped
        assert f"](../hf_transfer/model_cards/{template})" in (REPO_ROOT / "model_cards" / "README.md").read_text()
        assert not (REPO_ROOT / "model_cards" / template).exists()  # no second copy to drift
    assert hub.model_card_template_path() == REPO_ROOT / "hf_transfer" / "model_cards" / "transfer_model_card.md"
    for family in ("classification", "regression", "glue"):
        assert f"hf_transfer/metrics/{family}/{family}.py" in shipped


def test_card_metadata_round_trips_with_the_eval_results(tmp_path):
    path = write_model_card(tmp_path, _render())
    card = ModelCard.load(path)

    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"accuracy", "f1"}  # loss and run statistics stay out of model-index
    assert results["accuracy"].metric_value == pytest.approx(0.9123)
    assert results["f1"].metric_value == pytest.approx(0.9001)
    assert {r.dataset_type for r in results.values()} == {"uoft-cs/cifar10"}
    assert {r.dataset_split for r in results.values()} == {"validation"}
    assert {r.task_type for r in results.values()} == {"image-classification"}
    assert card.data.model_name == "fused-cifar10"
    assert card.data.base_model == ["timm/resnet18.a1_in1k", "google/vit-base-patch16-224"]
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.library_name == "transformers"
    assert card.data.license == "apache-2.0"
    assert {"hf_transfer", "transfer-learning", "timm"} <= set(card.data.tags)
    assert "model-index" in path.read_text()


def test_card_text_links_backbones_and_shows_the_method_and_results():
    text = _render().text

    assert "[timm/resnet18.a1_in1k](https://huggingface.co/timm/resnet18.a1_in1k)" in text
    assert "[google/vit-base-patch16-224](https://huggingface.co/google/vit-base-patch16-224)" in text
    # A bare timm architecture name is not a Hub repo: shown plain, not linked.
    assert "`timm:resnet18`" in text and "huggingface.co/timm/resnet18)" not in text
    assert "[uoft-cs/cifar10](https://huggingface.co/datasets/uoft-cs/cifar10)" in text
    assert "first 2 layer groups frozen" in text
    assert "weighted_sum" in text and "| google/vit-base-patch16-224 | 0.5000 |" in text
    assert "MLP (hidden sizes [64])" in text
    assert "| learning_rate | 5e-05 |" in text
    assert "| accuracy | 0.9123 |" in text and "runtime" not in text
    assert "![training curve](training_curve.png)" in text
    assert "![confusion matrix](confusion_matrix.png)" in text
    for framework in ("Transformers", "timm", "PyTorch", "Datasets", "huggingface_hub", "hf_transfer"):
        assert re.search(rf"^- {framework} \S+", text, flags=re.M), framework
    assert 'AutoModelForImageClassification.from_pretrained("test-user/fused-cifar10")' in text
    assert 'from_pretrained("test-user/fused-cifar10", trust_remote_code=True)' in text


def test_card_omits_images_and_fusion_when_absent_and_hides_local_paths(tmp_path):
    config = PretrainedConfig(
        backbones=[{"source": str(tmp_path / "weights"), "library": "timm", "modality": "text", "freeze": None}],
        fusion="concat",
        head="linear",
        id2label={0: "negative", 1: "positive"},
    )
    card = _render(
        config,
        task="text-classification",
        dataset_name=None,
        fusion_weights=None,
        has_training_curve=False,
        has_confusion_matrix=False,
    )

    assert "training_curve.png" not in card.text and "confusion_matrix.png" not in card.text
    assert "Fusion" not in card.text  # one backbone: the config's default fusion is irrelevant
    assert card.data.base_model is None and card.data.datasets is None
    assert "AutoModelForSequenceClassification" in card.text
    assert "a local dataset" in card.text
    assert "`weights` (local weights)" in card.text and str(tmp_path) not in card.text


def test_card_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="image-classification"):
        _render(task="object-detection")


def test_card_loading_snippets_work_as_written(hub_server):
    model = BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=100)
    )
    repo_id = _unique_repo("snippet")
    model.push_to_hub(repo_id)
    config = PretrainedConfig(
        backbones=[{"source": "google-bert/bert-base-uncased", "library": "transformers", "modality": "text"}]
    )
    card = _render(config, repo_id=repo_id, task="text-classification", fusion_weights=None)

    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert len(snippets) == 2
    for snippet in snippets:
        namespace: dict = {}
        exec(compile(snippet, "<model card>", "exec"), namespace)
        assert type(namespace["model"]) is BertForSequenceClassification


# ---------------------------------------------------------------------------------------------------- plots


def test_training_curve_is_a_png(tmp_path):
    log_history = [{"loss": 2.3 - 0.1 * step, "step": step, "epoch": step / 10} for step in range(1, 11)] + [
        {"eval_loss": 1.5, "eval_accuracy": 0.5, "eval_runtime": 1.0, "step": 5, "epoch": 0.5},
        {"eval_loss": 1.2, "eval_accuracy": 0.6, "eval_runtime": 1.0, "step": 10, "epoch": 1.0},
        {"train_runtime": 12.0, "train_loss": 1.9, "step": 10, "epoch": 1.0},
    ]
    path = plot_training_curve(log_history, tmp_path / "training_curve.png")

    assert path == tmp_path / "training_curve.png"
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_training_curve_without_losses_writes_nothing(tmp_path):
    assert plot_training_curve([{"train_runtime": 1.0, "step": 0}], tmp_path / "curve.png") is None
    assert not (tmp_path / "curve.png").exists()


@pytest.mark.parametrize("num_labels", [10, 100])
def test_confusion_matrix_is_a_png_for_few_and_many_classes(tmp_path, num_labels):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, num_labels, size=500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, num_labels, size=500))
    labels = [f"label_{i}" for i in range(num_labels)]

    path = plot_confusion_matrix(y_true, y_pred, labels, tmp_path / "confusion_matrix.png")
    assert path.read_bytes().startswith(PNG_MAGIC)

    matrix = hub.plots._normalized_confusion_matrix(y_true, y_pred, labels)
    present = np.isin(np.arange(num_labels), y_true)
    np.testing.assert_allclose(matrix.sum(axis=1)[present], 1.0)
    cell_texts = hub.plots._confusion_matrix_figure(matrix, labels, len(y_true)).axes[0].texts
    assert (len(cell_texts) > 0) == (num_labels <= 20)  # values in the cells only while they stay readable


def test_confusion_matrix_accepts_label_names():
    matrix = hub.plots._normalized_confusion_matrix(["cat", "dog", "dog"], ["cat", "cat", "dog"], ["cat", "dog"])
    np.testing.assert_allclose(matrix, [[1.0, 0.0], [0.5, 0.5]])


# ---------------------------------------------------------------------------------------------------- secrets


def test_find_secret_in_files_finds_a_planted_token(tmp_path):
    secret = "hf_planted_secret_123456"
    (tmp_path / "clean.json").write_text("{}")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "blob.bin").write_bytes(b"\x00" * 100 + secret.encode() + b"\x00")

    assert find_secret_in_files(tmp_path, secret) == [tmp_path / "deep" / "er" / "blob.bin"]
    assert find_secret_in_files(tmp_path / "clean.json", secret) == []


def test_secret_spanning_two_read_chunks_is_found(tmp_path):
    secret = "hf_across_the_boundary"
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 10 + secret.encode())
    assert hub.secrets._file_contains(path, secret.encode(), chunk_size=16)


def test_training_args_bin_holds_no_token_after_remove_secrets_from_args(tmp_path):
    secret = "hf_training_args_secret_42"
    args = TrainingArguments(output_dir=str(tmp_path / "out"), hub_token=secret, report_to="none")
    torch.save(args, tmp_path / "before.bin")  # what the Trainer writes as training_args.bin
    assert find_secret_in_files(tmp_path / "before.bin", secret)

    remove_secrets_from_args(args)
    torch.save(args, tmp_path / "training_args.bin")

    assert args.hub_token is None
    assert not find_secret_in_files(tmp_path / "training_args.bin", secret)


# ---------------------------------------------------------------------------------------------------- fail fast


def test_check_push_target_rejects_a_bad_repo_id_before_any_request(hub_server):
    seen = len(hub_server.requests)
    with pytest.raises(ValueError, match=r"'bad id!!'.*namespace/name"):
        check_push_target("bad id!!", hub_server.token)
    assert len(hub_server.requests) == seen


def test_check_push_target_rejects_a_bad_token_without_printing_it(hub_server):
    start = time.perf_counter()
    with pytest.raises(HubAuthError, match="hf auth login") as info:
        check_push_target("test-user/model", "hf_wrong_token_987")
    assert "hf_wrong_token_987" not in str(info.value)
    assert time.perf_counter() - start < 5


def test_check_push_target_without_any_token(hub_server, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubAuthError, match="No Hugging Face token"):
        check_push_target("test-user/model", None)


def test_check_push_target_completes_the_namespace(hub_server):
    assert check_push_target("my-model", None) == "test-user/my-model"
    assert check_push_target("test-user/my-model", hub_server.token) == "test-user/my-model"
    with pytest.raises(HubAuthError, match="someone-else"):
        check_push_target("someone-else/my-model", None)


# ---------------------------------------------------------------------------------------------------- push


def _training_output(folder: Path) -> Path:
    """A folder laid out like a Trainer output_dir after save_pretrained, checkpoints and all."""
    files = {
        "model.safetensors": b"safetensors weights",
        "config.json": b'{"model_type": "hf_transfer"}',
        "preprocessor_config.json": b"{}",
        "tokenizer.json": b"{}",
        "vocab.txt": b"[PAD]\n[UNK]\n",
        "README.md": b"---\nlicense: apache-2.0\n---\n# card\n",
        "training_curve.png": PNG_MAGIC + b"curve",
        "modeling_transfer.py": b"# custom code\n",
        "all_results.json": b'{"eval_accuracy": 0.9}',
        "training_args.bin": b"pickled TrainingArguments",
        "pytorch_model.bin": b"pickled weights",
        "optimizer.pt": b"optimizer state",
        "scheduler.pt": b"scheduler state",
        "rng_state.pth": b"rng",
        "checkpoint-10/model.safetensors": b"checkpoint weights",
        "checkpoint-10/config.json": b"{}",
        "runs/Jan01/events.out.tfevents.1": b"tensorboard",
        ".cache/huggingface/upload.lock": b"",
        "recipe.yaml": b"hub_token: nope\n",
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


PUBLISHED = {
    "model.safetensors",
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "vocab.txt",
    "README.md",
    "training_curve.png",
    "modeling_transfer.py",
    "all_results.json",
}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_push_uploads_only_publishable_files(hub_server, tmp_path):
    folder = _training_output(tmp_path)
    repo_id = _unique_repo("push")
    assert set(files_to_upload(folder)) == PUBLISHED

    commit = push_folder_to_hub(folder, repo_id, token=hub_server.token, commit_message="Add model")

    stored = hub_server.repo(repo_id).files_at(commit.oid)
    assert set(stored) == PUBLISHED | {".gitattributes"}
    assert all(stored[name] == (folder / name).read_bytes() for name in PUBLISHED)
    assert hub_server.repo(repo_id).commit(commit.oid).title == "Add model"


def test_push_to_a_branch_creates_it(hub_server, tmp_path):
    folder = _training_output(tmp_path)
    repo_id = _unique_repo("branch")
    commit = push_folder_to_hub(folder, repo_id, token=hub_server.token, revision="run-1")

    repo = hub_server.repo(repo_id)
    assert repo.branches["run-1"] == commit.oid
    assert set(repo.files_at("main")) == {".gitattributes"}


def test_push_refuses_files_that_contain_the_token(hub_server, tmp_path):
    folder = _training_output(tmp_path)
    (folder / "config.json").write_text(f'{{"hub_token": "{hub_server.token}"}}')
    repo_id = _unique_repo("leak")

    with pytest.raises(ValueError, match="config.json") as info:
        push_folder_to_hub(folder, repo_id, token=hub_server.token)
    assert hub_server.token not in str(info.value)
    assert ("model", repo_id) not in hub_server.repos  # refused before any request


def test_push_failure_leaves_the_folder_intact_and_says_how_to_retry(hub_server, tmp_path, monkeypatch):
    folder = _training_output(tmp_path)
    before = _folder_bytes(folder)
    repo_id = _unique_repo("outage")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the client backs off between retries of a 500

    with hub_server.failing("commit", 500), pytest.raises(HubPushError) as info:
        push_folder_to_hub(folder, repo_id, token=hub_server.token)

    message = str(info.value)
    assert "intact" in message and str(folder.resolve()) in message
    assert "from hf_transfer.hub import push_folder_to_hub" in message
    assert f"hf upload {repo_id} " in message
    assert hub_server.token not in message
    assert info.value.retry_command in message
    assert _folder_bytes(folder) == before
    assert [c.title for c in hub_server.repo(repo_id).commits] == ["initial commit"]

    # The Hub is back: the printed command works (its shell quoting parsed here, its Python run in-process).
    program, flag, code = shlex.split(info.value.retry_command)
    assert (program, flag) == ("python", "-c")
    exec(code, {})
    assert set(hub_server.repo(repo_id).head().files) == PUBLISHED | {".gitattributes"}


def test_push_to_an_unreachable_hub_raises_the_retry_error(hub_server, tmp_path, monkeypatch):
    folder = _training_output(tmp_path)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(HubPushError, match="intact"):
        push_folder_to_hub(folder, _unique_repo("unreachable"), token=hub_server.token)


@pytest.mark.parametrize(
    "source, library, hub_id",
    [
        ("timm:resnet18.a1_in1k", "timm", "timm/resnet18.a1_in1k"),
        ("resnet18.a1_in1k", "timm", "timm/resnet18.a1_in1k"),
        ("timm/resnet50.a1_in1k", "timm", "timm/resnet50.a1_in1k"),
        ("hf-hub:timm/vit_small_patch16_224.augreg_in21k", "timm", "timm/vit_small_patch16_224.augreg_in21k"),
        ("timm:test_resnet", "timm", None),  # a bare architecture name has no Hub repo
        ("google-bert/bert-base-uncased", "transformers", "google-bert/bert-base-uncased"),
        ("/data/models/my-bert", "transformers", None),
        ("./outputs/run-1", "transformers", None),
        ("bad id!!", "transformers", None),
    ],
)
def test_backbone_sources_link_to_the_hub_only_when_they_are_hub_repos(source, library, hub_id):
    assert hub.card._backbone_hub_id({"source": source, "library": library}) == hub_id


def test_backbone_hub_id_follows_the_recorded_pretrained_flag():
    timm_spec = {
        "source": "timm:resnet18",
        "library": "timm",
        "config": {"pretrained_cfg": {"hf_hub_id": "timm/resnet18.a1_in1k"}},
    }
    assert hub.card._backbone_hub_id({**timm_spec, "pretrained": True}) == "timm/resnet18.a1_in1k"
    assert hub.card._backbone_hub_id({**timm_spec, "source": "timm:resnet18.a1_in1k", "pretrained": False}) is None


def test_card_renders_from_the_real_transfer_config():
    from hf_transfer import TransferConfig

    config = TransferConfig(
        backbones=[
            {"source": "timm:resnet18.a1_in1k", "library": "timm", "modality": "image", "pooling": "avg"},
            {"source": "google-bert/bert-base-uncased", "library": "transformers", "modality": "text"},
        ],
        fusion="gated",
        freeze="backbone",
        head="mlp",
        head_hidden_sizes=[32],
        num_labels=2,
    )
    card = _render(config, fusion_weights=None)

    assert card.data.base_model == ["timm/resnet18.a1_in1k", "google-bert/bert-base-uncased"]
    assert "multimodal" in card.data.tags
    assert "every backbone frozen" in card.text and "gated" in card.text
    assert "image–text pairs" in card.text


def test_the_card_of_a_domain_adaptation_run_names_it_and_reports_the_target_data_as_a_second_result():
    from hf_transfer.adaptation import AdaptationDescription

    adaptation = AdaptationDescription(
        method="mmd",
        weight=1.0,
        target_dataset_name="someone/usps",
        target_eval_split="test",
        options={"mmd_kernel_scales": [0.5, 1.0]},
    )
    metrics = {"eval_accuracy": 0.9, "eval_target_accuracy": 0.7, "eval_target_im": 0.2, "eval_loss": 0.3}
    card = _render(dataset_name="ylecun/mnist", eval_results=metrics, adaptation=adaptation)
    assert card.data.datasets == ["ylecun/mnist", "someone/usps"]
    results = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {("ylecun/mnist", "validation", "accuracy"): 0.9, ("someone/usps", "test", "accuracy"): 0.7}
    section = card.text.split("### Domain adaptation")[1].split("## Intended uses")[0]
    assert "[someone/usps](https://huggingface.co/datasets/someone/usps)" in card.text
    for shown in (
        "`mmd`",
        "DAN (",
        "**λ (adaptation weight):** 1 (schedule: constant)",
        "| target_accuracy | 0.7000 |",
        "0.5, 1",
    ):
        assert shown in section, shown
    assert "| target_im | 0.2000 (no labels used) |" in section

    plain = _render(dataset_name="ylecun/mnist", eval_results=metrics)
    assert "Domain adaptation" not in plain.text and plain.data.datasets == ["ylecun/mnist"]
    assert "| target_accuracy | 0.7000 |" in plain.text  # without a description, nothing reported is dropped
