"""Multi-task models: shared backbone(s), one head per task, `loss = Σ w_t L_t`, masking, heads, round trips."""

import os
import subprocess
import sys
import textwrap

import fixtures
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
    assert model.label_names() == ["labels_shape", "labels_size", "labels_tags", "labels_colour"]
    for name, logits in before.items():
        assert torch.equal(after[name], logits), name
    model.replace_task("shape", 2)
    assert model.config.task("shape")["num_labels"] == 2 and model.task_names == ["shape", "size", "tags", "colour"]
    with torch.no_grad():
        assert torch.equal(model(pixels).logits["colour"], after["colour"])
    model.set_task_weights(colour=0.25)
    assert model.config.task("colour")["weight"] == 0.25
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


def test_a_task_taken_out_is_pushed_on_its_own_and_loads_from_the_hub(hub_server):
    import uuid

    from transformers import AutoModelForImageClassification

    model = image_model().eval()
    pixels = batch()["pixel_values"]
    repo_id = f"test-user/shape-{uuid.uuid4().hex[:8]}"
    model.for_task("shape").push_to_hub(repo_id)
    pulled = AutoModelForImageClassification.from_pretrained(repo_id).eval()
    assert type(pulled).__name__ == "TransferForImageClassification"
    assert pulled.config.id2label == {0: "circle", 1: "square", 2: "star"}
    with torch.no_grad():
        assert torch.equal(pulled(pixels).logits, model(pixels).logits["shape"])


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


# ------------------------------------------------------------------------------------------------- data plumbing


def test_collator_fills_other_tasks_labels_with_the_masks():
    from hf_transfer.multitask import MultiTaskCollator

    tasks = [make_task("cls", 3), make_task("reg", 1), make_task("tags", 2, problem_type="multi_label")]
    rows = [
        {"x": 1, "labels": 2, "task": 0},
        {"x": 2, "labels": 0.5, "task": 1},
        {"x": 3, "labels": [1.0, 0.0], "task": 2},
    ]

    def inner(inputs):
        assert all(set(row) == {"x"} for row in inputs)  # labels and task never reach the input collator
        return {"x": torch.tensor([row["x"] for row in inputs])}

    batch = MultiTaskCollator(inner, tasks)(rows)
    assert batch["labels_cls"].tolist() == [2, -100, -100]
    assert torch.isnan(batch["labels_reg"][[0, 2]]).all() and batch["labels_reg"][1] == 0.5
    assert batch["labels_tags"].tolist() == [[-100, -100], [-100, -100], [1.0, 0.0]]


@pytest.mark.parametrize("strategy", ["proportional", "temperature", "round_robin"])
def test_sampler_keeps_the_budget_is_seeded_per_epoch_and_mixes_as_asked(strategy):
    from hf_transfer.multitask import MultiTaskSampler

    sizes = [90, 10]
    sampler = MultiTaskSampler(sizes, strategy, temperature=3.0, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 100 and list(MultiTaskSampler(sizes, strategy, 3.0, seed=1)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new order each epoch
    small = sum(index >= 90 for index in first)
    expected = {"proportional": 10, "temperature": 32, "round_robin": 50}[
        strategy
    ]  # 100 * 10^⅓ / (90^⅓ + 10^⅓) = 32.5
    assert small == expected
    if strategy == "proportional":
        assert sorted(first) == list(range(100))
    if strategy == "round_robin":
        assert all((index >= 90) == (i % 2 == 1) for i, index in enumerate(first))


def test_metrics_score_each_task_on_its_rows_and_average():
    import numpy as np

    from hf_transfer.multitask import MultiTaskMetrics

    tasks = [make_task("a", 2), make_task("b", 1)]
    logits = {"a": np.array([[1.0, 0], [0, 1], [1, 0], [0, 0]]), "b": np.array([[0.0], [0], [1], [2]])}
    labels = (np.array([0, 0, -100, -100]), np.array([np.nan, np.nan, 1.0, 2.0], dtype=np.float32))
    metrics = MultiTaskMetrics(tasks)((logits, labels))
    assert metrics["a_accuracy"] == 0.5 and metrics["b_pearson"] == pytest.approx(1.0)
    assert metrics["mean_score"] == pytest.approx(0.75)


# ------------------------------------------------------------------------------------------------------ recipe

ROOT = fixtures.RECIPE_SCRIPT.parents[1]


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fixtures.make_glue(root, tasks=("mrpc", "stsb", "sst2"), n=24)
    return root, fixtures.save_word_level_bert(tmp_path_factory.mktemp("bert"))


def write_recipe(path, bert, root, tasks=None, **extra):
    import yaml

    tasks = tasks or [
        {"name": "paraphrase", "dataset_name": str(root / "glue"), "dataset_config_name": "mrpc"},
        {"name": "similarity", "dataset_name": str(root / "glue"), "dataset_config_name": "stsb", "weight": 0.5},
        {"name": "sentiment", "dataset_name": str(root / "glue"), "dataset_config_name": "sst2", "head": "mlp"}
        | {"head_hidden_sizes": [16]},
    ]
    recipe = {"backbone": bert, "max_seq_length": 16, "tasks": tasks, **extra}
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_recipe(recipe, *flags):
    finetune = fixtures.load_recipe_script()
    return finetune.main([str(recipe), *map(str, flags), *fixtures.RECIPE_COMMON_FLAGS])


def test_recipe_trains_every_task_and_reports_each(glue_data, tmp_path):
    root, bert = glue_data
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "mt.yaml", bert, root, task_sampling="temperature")
    results = run_recipe(recipe, "--output_dir", out, "--do_train", "--do_eval", "--max_steps", "3")
    for key in ("eval_paraphrase_accuracy", "eval_paraphrase_f1", "eval_similarity_pearson"):
        assert key in results, sorted(results)
    assert "eval_sentiment_accuracy" in results and "eval_mean_score" in results
    assert results["train_paraphrase_samples"] > 0
    model = AutoModel.from_pretrained(out)
    assert isinstance(model, TransferForMultiTask)
    assert [t["name"] for t in model.config.tasks] == ["paraphrase", "similarity", "sentiment"]
    assert model.config.task("similarity")["problem_type"] == "regression"
    assert model.config.task("similarity")["weight"] == 0.5 and model.config.task("sentiment")["head"] == "mlp"
    assert (out / "tokenizer.json").is_file()
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    index = card.data.to_dict()["model-index"][0]["results"]
    assert len(index) == 3  # one model-index result per task
    assert {r["task"]["name"] for r in index} == {"paraphrase", "similarity", "sentiment"}


@pytest.mark.parametrize(
    "tasks, message",
    [
        (
            [{"name": "a", "dataset_name": "{glue}", "dataset_config_name": "mrpc"}] * 2,
            "Two tasks are named 'a'",
        ),
        (
            [
                {"name": "a", "dataset_name": "{glue}", "dataset_config_name": "mrpc"},
                {"name": "b", "dataset_name": "{glue}", "dataset_config_name": "sst2", "label_column_name": "stars"},
            ],
            "Task 'b': .*stars",
        ),
        (
            [{"name": "a", "dataset_name": "{cifar}"}],
            "Task 'a' .* has image data but the backbone",
        ),
        ([{"name": "a", "dataset_name": "{glue}", "colour": 1}], r"Unknown keys \['colour'\] in task 'a'"),
        (
            [{"name": "a", "dataset_name": "{glue}", "dataset_config_name": "mrpc", "problem_type": "regression"}],
            "Task 'a'.*regression",
        ),
    ],
)
def test_bad_tasks_fail_before_training(tasks, message, glue_data, tmp_path):
    root, bert = glue_data
    if not (root / "cifar10").exists():
        fixtures.make_cifar10(root, n_train=8, n_test=4)
    paths = {"{glue}": str(root / "glue"), "{cifar}": str(root / "cifar10")}
    tasks = [{k: paths.get(v, v) if isinstance(v, str) else v for k, v in task.items()} for task in tasks]
    recipe = write_recipe(tmp_path / "bad.yaml", bert, root, tasks=tasks)
    with pytest.raises(ValueError, match=message):
        run_recipe(recipe, "--output_dir", tmp_path / "out", "--do_train", "--max_steps", "1")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def _script(args, launcher=None, **kwargs):
    command = (launcher or [sys.executable]) + [str(fixtures.RECIPE_SCRIPT)] + [str(a) for a in args]
    return subprocess.run(command + fixtures.RECIPE_COMMON_FLAGS, capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_accelerate_launch_two_processes_trains_the_multitask_recipe_as_one_job(glue_data, tmp_path):
    import json

    root, bert = glue_data
    out = tmp_path / "ddp"
    recipe = write_recipe(tmp_path / "mt.yaml", bert, root, task_sampling="round_robin")
    result = _script(
        [recipe, "--output_dir", out, "--do_train", "--do_eval", "--num_train_epochs", "1"],
        launcher=fixtures.ACCELERATE_TWO_PROCESSES,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "world size: 2" in log and "world size: 1" not in log
    state = json.loads((out / "trainer_state.json").read_text())
    train_samples = json.loads((out / "train_results.json").read_text())["train_samples"]
    assert state["global_step"] == -(-train_samples // 16)  # 8 per device × 2 processes
    results = json.loads((out / "all_results.json").read_text())
    assert {"eval_paraphrase_accuracy", "eval_similarity_pearson", "eval_sentiment_accuracy"} <= set(results)


@pytest.mark.slow
def test_resumed_multitask_run_reaches_the_same_metrics(glue_data, tmp_path):
    import json

    root, bert = glue_data
    recipe = write_recipe(tmp_path / "mt.yaml", bert, root, task_sampling="temperature")
    common = [recipe, "--do_train", "--do_eval", "--max_steps", "8", "--seed", "3", "--learning_rate", "0.01"]
    common += ["--save_strategy", "steps", "--save_steps", "4"]
    reference = _script(common + ["--output_dir", tmp_path / "reference"], timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    # a run stopped after its step-4 checkpoint (kept) ...
    partial = _script(common + ["--output_dir", tmp_path / "resumed", "--max_steps", "8"], timeout=600)
    assert partial.returncode == 0
    import shutil

    shutil.rmtree(tmp_path / "resumed" / "checkpoint-8")
    for name in ("model.safetensors", "eval_results.json", "all_results.json", "trainer_state.json"):
        (tmp_path / "resumed" / name).unlink()
    # ... resumes from checkpoint-4 (found automatically) to the same model
    resumed = _script(common + ["--output_dir", tmp_path / "resumed"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "reference" / "eval_results.json").read_text())
    got = json.loads((tmp_path / "resumed" / "eval_results.json").read_text())
    for key in ("eval_loss", "eval_paraphrase_accuracy", "eval_similarity_pearson", "eval_mean_score"):
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


def test_shipped_multitask_recipes_parse(tmp_path):
    from hf_transfer.multitask import parse_multitask_args

    finetune = fixtures.load_recipe_script()
    recipes = [r for r in sorted((ROOT / "recipes").glob("*.yaml")) if "\ntasks:" in r.read_text()]
    assert {r.name for r in recipes} >= {"glue_multitask_bert.yaml", "multitask_minilm_offline.yaml"}
    for recipe in recipes:
        model_args, _, _, specs = parse_multitask_args(
            [str(recipe), "--output_dir", str(tmp_path)], finetune.ModelArguments
        )
        assert model_args.backbone and len(specs) >= 3, recipe.name
        assert "expected_results" in recipe.read_text(), recipe.name


def test_image_tasks_train_jointly_on_a_timm_backbone(tmp_path):
    import yaml

    fixtures.make_cifar10(tmp_path, n_train=24, n_test=8)
    fixtures.make_cifar100(tmp_path, n_train=24, n_test=8)
    recipe = tmp_path / "images.yaml"
    tasks = [
        {"name": "objects", "dataset_name": str(tmp_path / "cifar10")},
        {"name": "coarse", "dataset_name": str(tmp_path / "cifar100"), "label_column_name": "coarse_label"},
    ]
    recipe.write_text(yaml.safe_dump({"backbone": ["timm:test_resnet"], "random_init": True, "tasks": tasks}))
    out = tmp_path / "out"
    results = run_recipe(
        recipe, "--output_dir", out, "--do_train", "--do_eval", "--max_steps", "2", "--task_sampling", "round_robin"
    )
    assert {"eval_objects_accuracy", "eval_coarse_accuracy", "eval_mean_accuracy"} <= set(results)
    model = AutoModel.from_pretrained(out)
    assert model.config.task("coarse")["num_labels"] == 20 and model.config.task("objects")["num_labels"] == 10
    single = model.for_task("objects")
    assert type(single).__name__ == "TransferForImageClassification"


def test_push_to_hub_uploads_the_model_and_a_card_with_every_task(glue_data, hub_server, tmp_path):
    import uuid

    from huggingface_hub import ModelCard

    root, bert = glue_data
    repo_id = f"test-user/multitask-{uuid.uuid4().hex[:8]}"
    recipe = write_recipe(tmp_path / "mt.yaml", bert, root)
    run_recipe(
        recipe,
        *("--output_dir", tmp_path / "pushed", "--do_train", "--do_eval", "--max_steps", "1"),
        *("--push_to_hub", "--hub_model_id", repo_id),
    )
    model = AutoModel.from_pretrained(repo_id)
    assert isinstance(model, TransferForMultiTask) and len(model.config.tasks) == 3
    card = ModelCard.load(repo_id)
    assert len(card.data.to_dict()["model-index"][0]["results"]) == 3
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(repo_id)
    assert "training_args.bin" not in files and not any(f.startswith("checkpoint-") for f in files)
