"""Multi-task models: shared backbone(s), one head per task, `loss = Σ w_t L_t`, masking, heads, round trips."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from modeling_utils import save_tiny_bert
from transformers import AutoConfig, AutoModel, pipeline

from hf_transfer import MultiTaskConfig, TransferForMultiTask, TransferForSequenceClassification
from hf_transfer.configuration_multitask import make_task

TASKS = [
    {"name": "shape", "num_labels": 3, "id2label": ["circle", "square", "star"]},
    {"name": "size", "num_labels": 1, "problem_type": "regression", "weight": 0.5},
    {"name": "tags", "num_labels": 4, "problem_type": "multi_label", "head": "mlp", "head_hidden_sizes": [8]},
]


def image_model(tasks=TASKS, **kwargs) -> TransferForMultiTask:
    torch.manual_seed(0)
    return TransferForMultiTask.from_backbones("timm:test_resnet", pretrained=False, tasks=tasks, **kwargs)


def batch(n: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "pixel_values": torch.randn(n, 3, 64, 64, generator=generator),
        "labels_shape": torch.arange(n) % 3,
        "labels_size": torch.rand(n, generator=generator),
        "labels_tags": (torch.rand(n, 4, generator=generator) > 0.5).float(),
    }


def test_every_task_gets_its_logits_and_loss_and_the_total_is_the_weighted_sum():
    model = image_model().eval()
    inputs = batch()
    out = model(**inputs)
    assert {name: tuple(t.shape) for name, t in out.logits.items()} == {
        "shape": (6, 3),
        "size": (6, 1),
        "tags": (6, 4),
    }
    expected = {
        "shape": F.cross_entropy(out.logits["shape"], inputs["labels_shape"]),
        "size": F.mse_loss(out.logits["size"].squeeze(-1), inputs["labels_size"]),
        "tags": F.binary_cross_entropy_with_logits(out.logits["tags"], inputs["labels_tags"]),
    }
    for name, loss in expected.items():
        torch.testing.assert_close(out.task_losses[name], loss)
    torch.testing.assert_close(out.loss, expected["shape"] + 0.5 * expected["size"] + expected["tags"])
    # the same labels as a dict
    labels = {name: inputs[f"labels_{name}"] for name in ("shape", "size", "tags")}
    torch.testing.assert_close(model(pixel_values=inputs["pixel_values"], labels=labels).loss, out.loss)


def test_missing_labels_are_masked_and_an_unlabelled_task_gets_no_gradient():
    model = image_model()
    inputs = batch()
    inputs["labels_shape"][[1, 4]] = -100
    inputs["labels_size"][:] = float("nan")  # no row labelled for `size` in this batch
    inputs["labels_tags"][0] = -100
    out = model(**inputs)
    keep = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(
        out.task_losses["shape"], F.cross_entropy(out.logits["shape"][keep], inputs["labels_shape"][keep])
    )
    torch.testing.assert_close(
        out.task_losses["tags"],
        F.binary_cross_entropy_with_logits(out.logits["tags"][1:], inputs["labels_tags"][1:]),
    )
    assert "size" not in out.task_losses and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is None for p in model.heads["size"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads["shape"].parameters())
    assert any(p.grad is not None for p in model.transfer.parameters())


def test_a_task_without_labels_argument_is_left_out_of_the_loss():
    model = image_model().eval()
    inputs = batch()
    out = model(pixel_values=inputs["pixel_values"], labels_shape=inputs["labels_shape"])
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits["shape"], inputs["labels_shape"]))
    assert model(pixel_values=inputs["pixel_values"]).loss is None


def test_adding_a_head_to_a_trained_model_leaves_the_other_outputs_unchanged():
    model = image_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # "trained"
        model(**batch()).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    pixels = batch()["pixel_values"]
    with torch.no_grad():
        before = model(pixels).logits
    model.add_task("colour", 5, id2label=list("rgbcy"), weight=2.0)
    with torch.no_grad():
        after = model(pixels).logits
    assert list(after) == ["shape", "size", "tags", "colour"] and after["colour"].shape == (6, 5)
    for name, logits in before.items():
        assert torch.equal(after[name], logits), name
    model.replace_task("shape", 2)
    assert model.config.task("shape")["num_labels"] == 2 and model.task_names == ["shape", "size", "tags", "colour"]
    with torch.no_grad():
        assert torch.equal(model(pixels).logits["colour"], after["colour"])
    model.remove_task("tags")
    assert model.task_names == ["shape", "size", "colour"] and "tags" not in dict(model.named_modules())["heads"]
    with pytest.raises(ValueError, match="exists already; use replace_task"):
        model.add_task("size", 1)
    with pytest.raises(KeyError, match="tasks are: shape, size, colour"):
        model.remove_task("nope")


def test_for_task_is_an_ordinary_classifier_with_the_same_logits_sharing_the_backbone(tmp_path):
    model = image_model().eval()
    pixels = batch()["pixel_values"]
    single = model.for_task("shape")
    assert type(single).__name__ == "TransferForImageClassification"
    assert single.config.id2label == {0: "circle", 1: "square", 2: "star"}
    assert single.transfer.backbones[0] is model.transfer.backbones[0]
    with torch.no_grad():
        assert torch.equal(single(pixels).logits, model(pixels).logits["shape"])
        assert torch.equal(model.for_task("size")(pixels).logits, model(pixels).logits["size"])
    assert model.for_task("size").config.problem_type == "regression"
    single.save_pretrained(tmp_path / "shape")
    reloaded = AutoModel.from_pretrained(tmp_path / "shape")
    assert reloaded.config.model_type == "hf_transfer"


def test_text_task_taken_out_is_served_by_the_text_classification_pipeline(tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    torch.manual_seed(0)
    model = TransferForMultiTask.from_backbones(
        bert,
        tasks=[{"name": "sentiment", "num_labels": 2, "id2label": ["neg", "pos"]}, {"name": "score", "num_labels": 1}],
    ).eval()
    single = model.for_task("sentiment")
    assert isinstance(single, TransferForSequenceClassification)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert)
    classifier = pipeline("text-classification", model=single, tokenizer=tokenizer, top_k=None)
    result = {row["label"]: row["score"] for row in classifier(["w1 w2 w3"])[0]}
    encoded = tokenizer("w1 w2 w3", return_tensors="pt")
    with torch.no_grad():
        probs = model(**encoded).logits["sentiment"].softmax(-1)[0]
    assert result == pytest.approx({"neg": float(probs[0]), "pos": float(probs[1])}, abs=1e-6)


def test_save_and_load_in_a_fresh_process_with_remote_code_where_hf_transfer_is_absent(tmp_path):
    model = image_model().eval()
    inputs = {"pixel_values": batch()["pixel_values"]}
    with torch.no_grad():
        logits = model(**inputs).logits
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    torch.save({"inputs": inputs, "logits": logits, "state": model.state_dict()}, tmp_path / "data.pt")
    assert {"modeling_multitask.py", "configuration_multitask.py", "modeling_transfer.py"} <= set(
        os.listdir(model_dir)
    )
    assert AutoConfig.from_pretrained(model_dir).tasks == model.config.tasks
    script = textwrap.dedent(
        f"""
        import sys
        import torch
        sys.modules["hf_transfer"] = None  # as if not installed
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        data = torch.load({str(tmp_path / "data.pt")!r}, weights_only=True)
        state = model.state_dict()
        assert list(state) == list(data["state"]), "state-dict keys differ"
        assert all(torch.equal(state[k], v) for k, v in data["state"].items())
        with torch.no_grad():
            out = model(**data["inputs"]).logits
        assert list(out) == list(data["logits"])
        assert all(torch.equal(out[k], v) for k, v in data["logits"].items())
        assert torch.equal(model.for_task("shape")(**data["inputs"]).logits, data["logits"]["shape"])
        print("OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_hf_transfer_round_trip_keeps_tasks_and_freezing(tmp_path):
    model = image_model(freeze="backbone")
    model.save_pretrained(tmp_path / "m")
    reloaded = AutoModel.from_pretrained(tmp_path / "m")
    assert isinstance(reloaded, TransferForMultiTask) and reloaded.config.tasks == model.config.tasks
    assert not any(p.requires_grad for p in reloaded.transfer.parameters())
    assert all(p.requires_grad for p in reloaded.heads.parameters())


@pytest.mark.parametrize(
    "tasks, message",
    [
        ([{"name": "a", "num_labels": 2}, {"name": "a", "num_labels": 3}], "Two tasks are named 'a'"),
        ([{"name": "a", "num_labels": 2, "problem_type": "ranking"}], "Unknown problem_type 'ranking'"),
        ([{"name": "a b", "num_labels": 2}], "must be a Python identifier"),
        ([{"name": "a", "num_labels": 2, "head": "mlp"}], "needs head_hidden_sizes"),
        ([{"name": "a", "num_labels": 2, "weight": -1}], "weight of task 'a'"),
    ],
)
def test_bad_tasks_fail_before_any_backbone_loads(tasks, message):
    with pytest.raises(ValueError, match=message):
        TransferForMultiTask.from_backbones("no/such-backbone", tasks=tasks)


def test_labels_for_an_unknown_task_or_a_single_tensor_are_refused():
    model = image_model()
    pixels = batch()["pixel_values"]
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['colour'\]; tasks: shape, size, tags"):
        model(pixels, labels_colour=torch.zeros(6))
    with pytest.raises(TypeError, match="labels per task"):
        model(pixels, labels=torch.zeros(6))


def test_config_validates_tasks_directly():
    with pytest.raises(Exception, match="Two tasks are named"):
        MultiTaskConfig(tasks=[make_task("a", 2), make_task("a", 2)])
    assert make_task("a", 2, problem_type="single_label")["problem_type"] == "single_label_classification"
