"""L2-SP, BSS and EMA (hf_transfer.regularization) against their definitions, in real Trainer runs."""

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from hf_transfer import TransferForImageClassification
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
