"""L2-SP, BSS, Co-Tuning and EMA (hf_transfer.regularization) against their definitions, in real Trainer runs."""

import numpy as np
import pytest
import timm
import torch
from timm.data import Mixup
from torch.utils.data import default_collate
from transformers import TrainerCallback

from hf_transfer import BackboneSpec, TransferForImageClassification
from hf_transfer.mixup import MixupTrainer
from hf_transfer.modeling_transfer import load_weights_file, source_classifier
from hf_transfer.regularization import (
    EMA_WEIGHTS_NAME,
    BSSRegularizer,
    EMACallback,
    L2SPRegularizer,
    RegularizationArguments,
    build_regularization,
)
from hf_transfer.training import GradualUnfreezingCallback, TransferTrainer
from tests.modeling_utils import SeparableImages, tiny_training_args


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2, **kwargs)


def test_l2sp_is_zero_at_the_pretrained_weights_and_its_gradient_points_back():
    model = _model()
    for p in model.head.parameters():
        torch.nn.init.zeros_(p)
    regularizer = L2SPRegularizer(model, weight=0.1, head_weight=0.0)
    assert regularizer(model).item() == 0.0

    pretrained = {n: p.detach().clone() for n, p in model.transfer.backbones.named_parameters()}
    with torch.no_grad():
        for p in model.transfer.backbones.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    penalty = regularizer(model)
    expected = sum(0.5 * (p - pretrained[n]).pow(2).sum() for n, p in model.transfer.backbones.named_parameters())
    torch.testing.assert_close(penalty, 0.1 * expected)
    penalty.backward()
    for name, p in model.transfer.backbones.named_parameters():
        # d/dw α·½‖w − w₀‖² = α (w − w₀): a gradient step w − lr·grad moves w towards w₀
        torch.testing.assert_close(p.grad, 0.1 * (p.detach() - pretrained[name]))
    step = {n: p.detach() - 1.0 * p.grad for n, p in model.transfer.backbones.named_parameters()}
    before = sum((p.detach() - pretrained[n]).norm() for n, p in model.transfer.backbones.named_parameters())
    after = sum((step[n] - pretrained[n]).norm() for n in step)
    assert after < before


def test_l2sp_head_term_is_plain_l2():
    model = _model()
    regularizer = L2SPRegularizer(model, weight=0.0, head_weight=0.5)
    expected = sum(0.5 * p.pow(2).sum() for p in model.head.parameters())
    torch.testing.assert_close(regularizer(model), 0.5 * expected)


def test_l2sp_turns_weight_decay_off_for_the_backbone_with_layer_decay_and_unfreezing(tmp_path):
    model = _model()
    regularizers = [L2SPRegularizer(model, 0.01), BSSRegularizer(model, 0.001, k=2)]
    args = tiny_training_args(tmp_path, max_steps=4, per_device_train_batch_size=8, weight_decay=0.1)
    trainer = TransferTrainer(
        model=model,
        args=args,
        train_dataset=SeparableImages(n=32),
        layer_decay=0.75,
        head_lr_multiplier=10,
        regularizers=regularizers,
        callbacks=[GradualUnfreezingCallback(frozen_for=1, interval=1, unit="step")],
    )
    trainer.create_optimizer()
    backbone = {id(p) for p in model.transfer.backbones.parameters()}
    for group in trainer.optimizer.param_groups:
        if any(id(p) in backbone for p in group["params"]):
            assert group["weight_decay"] == 0.0, group["name"]
    assert any(g["weight_decay"] == 0.1 for g in trainer.optimizer.param_groups)  # the head keeps its decay
    result = trainer.train()
    assert np.isfinite(result.training_loss)


def test_training_loss_includes_the_regularizers(tmp_path):
    model = _model()
    regularizer = L2SPRegularizer(model, weight=0.0, head_weight=1000.0)
    args = tiny_training_args(tmp_path, max_steps=1, per_device_train_batch_size=8, learning_rate=0.0)
    data = SeparableImages(n=8)
    plain = TransferTrainer(model=model, args=args, train_dataset=data).train().training_loss
    with_penalty = TransferTrainer(model=model, args=args, train_dataset=data, regularizers=[regularizer])
    loss = with_penalty.train().training_loss
    assert loss == pytest.approx(plain + regularizer(model).item(), rel=1e-4)


def test_l2sp_with_random_init_is_an_error():
    with pytest.raises(ValueError, match="random_init"):
        build_regularization(_model(), RegularizationArguments(l2sp_weight=0.01), random_init=True)


def test_bss_matches_its_definition_on_the_head_input():
    model = _model().train()
    regularizer = BSSRegularizer(model, weight=0.5, k=2)
    data = SeparableImages(n=6)
    batch = torch.stack([data[i]["pixel_values"] for i in range(6)])
    model(pixel_values=batch)
    value = regularizer(model)
    with torch.no_grad():
        # train mode, as in the forward above (BatchNorm normalises with the batch's statistics)
        features = model.transfer(pixel_values=batch).pooler_output.numpy().astype(np.float64)
    singular = np.linalg.svd(features.T, compute_uv=False)  # tllib: svd(feature.t())
    expected = 0.5 * (singular[-1] ** 2 + singular[-2] ** 2)
    assert value.item() == pytest.approx(expected, rel=1e-3)
    assert value.requires_grad


class _Recorder(TrainerCallback):
    """Records the model's weights after every optimizer step (before the EMA callback that follows it)."""

    def __init__(self):
        self.weights = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def test_ema_follows_the_decay_formula_with_warmup_and_replaces_the_weights(tmp_path):
    model = _model()
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    recorder, ema = _Recorder(), EMACallback(decay=0.6, warmup=True, as_final=True)
    args = tiny_training_args(tmp_path, max_steps=5, per_device_train_batch_size=8)
    TransferTrainer(model=model, args=args, train_dataset=SeparableImages(n=40), callbacks=[recorder, ema]).train()

    expected = initial
    for step, weights in enumerate(recorder.weights, start=1):
        n = step - 1  # timm: no decay at the first update, then 1 - (1 + n)^(-2/3), capped at `decay`
        decay = 0.0 if n <= 0 else min(1 - (1 + n) ** (-2 / 3), 0.6)
        expected = {
            k: decay * expected[k] + (1 - decay) * w if w.is_floating_point() else w for k, w in weights.items()
        }
    head = next(k for k in expected if k.startswith("head.") and k.endswith("weight"))
    assert recorder.weights[-1][head].ne(expected[head]).any()  # the EMA is not the last weights
    for key, value in model.state_dict().items():  # as_final: the model now holds the EMA
        torch.testing.assert_close(value, expected[key], msg=key)


def test_ema_is_saved_with_checkpoints_and_restored_on_resume(tmp_path):
    data = SeparableImages(n=32)
    args = tiny_training_args(
        tmp_path, max_steps=4, per_device_train_batch_size=8, save_strategy="steps", save_steps=2
    )
    straight_ema = EMACallback(decay=0.9, as_final=False)
    TransferTrainer(model=_model(), args=args, train_dataset=data, callbacks=[straight_ema]).train()
    assert (tmp_path / "checkpoint-2" / EMA_WEIGHTS_NAME).is_file()

    resumed_ema = EMACallback(decay=0.9, as_final=False)
    trainer = TransferTrainer(model=_model(), args=args, train_dataset=data, callbacks=[resumed_ema])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    for key, value in straight_ema.ema.module.state_dict().items():
        torch.testing.assert_close(resumed_ema.ema.module.state_dict()[key], value, msg=key)


def test_bad_flags():
    with pytest.raises(ValueError, match="--ema_decay"):
        RegularizationArguments(ema_decay=1.0)
    with pytest.raises(ValueError, match="--bss_k"):
        RegularizationArguments(bss_k=0)
    with pytest.raises(ValueError, match="--l2sp_weight"):
        RegularizationArguments(l2sp_weight=-1)


# --- Co-Tuning ---------------------------------------------------------------------------------------------------


def _source_weights(tmp_path, renamed=False, with_classifier=True, classes=5):
    """A timm checkpoint of test_resnet with a `classes`-way source classifier (renamed: a port whose tensor names
    differ, matched in order, as the EfficientNet-Lite ImageNet files are)."""
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=classes)
    state = source.state_dict()
    if not with_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if renamed:
        state = {f"_port.{k.replace('.', '_')}": v for k, v in state.items()}
    path = tmp_path / f"source{'_renamed' if renamed else ''}{'' if with_classifier else '_headless'}.pth"
    torch.save(state, path)
    return str(path), source.get_classifier()


@pytest.mark.parametrize("renamed", [False, True])
def test_source_classifier_is_the_checkpoints_own_head(tmp_path, renamed):
    path, expected = _source_weights(tmp_path, renamed=renamed)
    head = source_classifier("timm:test_resnet", path)
    assert head.out_features == 5 and not head.training
    torch.testing.assert_close(head.weight, expected.weight)
    torch.testing.assert_close(head.bias, expected.bias)
    # the backbone built from the same file still drops the head (it gets a new one)
    model = TransferForImageClassification.from_backbones(BackboneSpec("timm:test_resnet", weights=path), num_labels=3)
    assert model.head.layers[-1].out_features == 3


def test_no_source_classifier_where_there_is_none(tmp_path):
    path, _ = _source_weights(tmp_path, with_classifier=False)
    assert source_classifier("timm:test_resnet", path) is None  # the file has no head: nothing to read
    assert source_classifier("test_resnet", None, pretrained=False) is None  # random init
    assert source_classifier("bert-base-uncased", None) is None  # not a timm model
    model = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    with pytest.raises(ValueError, match="source classifier"):
        load_weights_file(model, path, with_classifier=True)


def test_a_saved_hf_transfer_classifier_is_a_source_classifier(tmp_path):
    """A source model fine-tuned on another task: its trained linear head is the source classifier."""
    torch.manual_seed(0)
    source = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=4)
    source.save_pretrained(tmp_path / "source")
    head = source_classifier(str(tmp_path / "source"))
    assert isinstance(head, torch.nn.Linear) and head.out_features == 4 and not head.training
    torch.testing.assert_close(head.weight, source.head.layers[-1].weight)
    torch.testing.assert_close(head.bias, source.head.layers[-1].bias)
    assert source_classifier(str(tmp_path / "source"), pretrained=False) is None  # its random-init self has none
    mlp = TransferForImageClassification.from_backbones(
        "timm:test_resnet", pretrained=False, num_labels=4, head="mlp", head_hidden_sizes=[8]
    )
    mlp.save_pretrained(tmp_path / "mlp")
    fused = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_resnet"], pretrained=False, num_labels=4
    )
    fused.save_pretrained(tmp_path / "fused")
    # the head reads something other than one backbone's pooled features: not a classifier over them
    assert source_classifier(str(tmp_path / "mlp")) is None
    assert source_classifier(str(tmp_path / "fused")) is None
    # Co-Tuning from that source: the new classifier's backbone is the source's, the source head its trained one
    spec = BackboneSpec(str(tmp_path / "source"))
    model = TransferForImageClassification.from_backbones(spec, num_labels=2)
    [regularizer], _ = build_regularization(model, RegularizationArguments(co_tuning_weight=1.0), backbones=[spec])
    torch.testing.assert_close(regularizer.source_head.weight, source.head.layers[-1].weight)


def _co_tuning_model(tmp_path, labels=2):
    path, head = _source_weights(tmp_path)
    torch.manual_seed(0)
    spec = BackboneSpec("timm:test_resnet", weights=path)
    return TransferForImageClassification.from_backbones(spec, num_labels=labels), spec, head


def test_co_tuning_relationship_and_loss_match_their_definitions(tmp_path):
    model, spec, _ = _co_tuning_model(tmp_path)
    [regularizer], _ = build_regularization(model, RegularizationArguments(co_tuning_weight=0.5), backbones=[spec])
    data = SeparableImages(n=12)
    relationship = regularizer.learn_relationship(model, data, default_collate, batch_size=5)
    # tllib's Relationship: the mean source softmax over each target class's rows
    pixels = torch.stack([data[i]["pixel_values"] for i in range(12)])
    labels = torch.tensor([data[i]["labels"] for i in range(12)])
    with torch.no_grad():
        probs = torch.softmax(regularizer.source_head(model.eval().transfer(pixel_values=pixels).pooler_output), -1)
    expected = torch.stack([probs[labels == c].mean(0) for c in range(2)])
    torch.testing.assert_close(relationship, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(relationship.sum(1), torch.ones(2))

    model.train()
    model(pixel_values=pixels[:4])
    value = regularizer(model, labels[:4])
    with torch.no_grad():
        logits = regularizer.source_head(model.transfer(pixel_values=pixels[:4]).pooler_output)
    # CoTuningLoss: −Σ_s p(y_s | y_t) log softmax(source logits)_s, batch mean, times the weight
    manual = -(expected[labels[:4]] * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert value.item() == pytest.approx(0.5 * manual.item(), rel=1e-4)
    value.backward()
    assert all(p.grad is None for p in regularizer.source_head.parameters())  # the source head stays fixed
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.transfer.backbones.parameters())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_co_tuning_trains_in_the_trainer(tmp_path, label_smoothing):
    model, spec, _ = _co_tuning_model(tmp_path)
    regularizers, _ = build_regularization(model, RegularizationArguments(co_tuning_weight=2.3), backbones=[spec])
    data = SeparableImages(n=16)
    regularizers[0].learn_relationship(model, data, default_collate)
    args = tiny_training_args(
        tmp_path, max_steps=1, per_device_train_batch_size=8, learning_rate=0.0, label_smoothing_factor=label_smoothing
    )
    plain = TransferTrainer(model=model, args=args, train_dataset=data).train().training_loss
    loss = TransferTrainer(model=model, args=args, train_dataset=data, regularizers=regularizers).train().training_loss
    # the Trainer pops the labels with label smoothing: Co-Tuning still gets them
    assert loss > plain + 0.1


def test_co_tuning_bad_input(tmp_path):
    model, spec, _ = _co_tuning_model(tmp_path, labels=3)
    args = RegularizationArguments(co_tuning_weight=1.0)
    with pytest.raises(ValueError, match="random_init"):
        build_regularization(model, args, random_init=True, backbones=[spec])
    with pytest.raises(ValueError, match="--model_name_or_path"):
        build_regularization(model, args)
    path, _ = _source_weights(tmp_path, with_classifier=False)
    with pytest.raises(ValueError, match="source classifier of 'timm:test_resnet'"):
        build_regularization(model, args, backbones=[BackboneSpec("timm:test_resnet", weights=path)])
    model.transfer.backbones.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        build_regularization(model, args, backbones=[spec])
    model.transfer.backbones.requires_grad_(True)
    [regularizer], _ = build_regularization(model, args, backbones=[spec])
    with pytest.raises(RuntimeError, match="learn_relationship"):
        regularizer(model, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):  # SeparableImages has 2 of the 3 classes
        regularizer.learn_relationship(model, SeparableImages(n=8), default_collate)
    with pytest.raises(ValueError, match="MixupTrainer"):
        MixupTrainer(
            model=model,
            args=tiny_training_args(tmp_path),
            train_dataset=SeparableImages(n=8),
            regularizers=[regularizer],
            mixup=Mixup(num_classes=3),
        )
    with pytest.raises(ValueError, match="--co_tuning_weight"):
        RegularizationArguments(co_tuning_weight=-1)
