"""Training beyond plain fine-tuning: layer-wise LR decay, gradual unfreezing, knowledge distillation; each on its
own and through the recipe (`recipes/finetune.py` on a small CIFAR-like task, see tests/recipe_runs.py)."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from modeling_utils import SeparableImages, SeparableText, clone_state, save_tiny_bert, tiny_training_args
from recipe_runs import finetune, logits, probe, run, validation_inputs
from safetensors.torch import load_file
from timm.optim import param_groups_layer_decay as timm_param_groups_layer_decay
from transformers import BertForSequenceClassification, Trainer, TrainerCallback

from hf_transfer import TransferForImageClassification, TransferForSequenceClassification
from hf_transfer.training import (
    DistillationTrainer,
    Distiller,
    GradualUnfreezingCallback,
    TransferTrainer,
    param_groups_layer_decay,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def image_model(seed: int = 0, **kwargs) -> TransferForImageClassification:
    """A random-init timm `test_resnet` classifier (5 layer groups), the same for the same seed."""
    torch.manual_seed(seed)
    kwargs.setdefault("num_labels", 2)
    return TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, **kwargs)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> str:
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def expected_scales(model, layer_decay: float, head_lr_multiplier: float) -> dict[int, float]:
    """id(parameter) -> lr scale, straight from the formula: group k of K gets decay ** (K - k), the head its multiplier."""
    scales = {id(p): head_lr_multiplier for p in model.parameters()}
    for backbone in model.transfer.backbones:
        parameters = dict(backbone.named_parameters())
        groups = backbone.layer_groups()
        for k, names in enumerate(groups):
            for name in names:
                scales[id(parameters[name])] = layer_decay ** (len(groups) - k)
    return scales


def assert_groups_follow_formula(groups, model, learning_rate, layer_decay, head_lr_multiplier):
    scales = expected_scales(model, layer_decay, head_lr_multiplier)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each exactly once
    for group in groups:
        for parameter in group["params"]:
            assert group["lr_scale"] == scales[id(parameter)], group["name"]
            assert group["lr"] == learning_rate * scales[id(parameter)], group["name"]


def group_state_keys(backbone) -> list[set[str]]:
    """State-dict keys (parameters and buffers such as BatchNorm running statistics) of each layer group."""
    modules = {name for name, _ in backbone.named_modules()}
    buffers = [name for name, _ in backbone.named_buffers()]
    keys = []
    for names in backbone.layer_groups():
        owners = {name.rsplit(".", 1)[0] for name in names} & modules
        keys.append(set(names) | {b for b in buffers if b.rsplit(".", 1)[0] in owners})
    return keys


class StepRecorder(TrainerCallback):
    """Calls `record(model, optimizer)` after every optimizer step and keeps the results by global step."""

    def __init__(self, record):
        self.record = record
        self.by_step = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.by_step[state.global_step] = self.record(model, optimizer)


# ------------------------------------------------------------------------------------------------- layer decay


def test_layer_decay_groups_follow_the_timm_formula_for_a_timm_backbone():
    model = image_model()
    assert len(model.transfer.backbones[0].layer_groups()) == 5
    groups = param_groups_layer_decay(model, 1e-3, weight_decay=0.05, layer_decay=0.5, head_lr_multiplier=10.0)
    assert_groups_follow_formula(groups, model, 1e-3, 0.5, 10.0)
    lrs = {group["name"]: group["lr"] for group in groups}
    assert lrs["head.decay"] == 1e-3 * 10.0
    assert lrs["backbone0.group4.decay"] == 1e-3 * 0.5  # the top backbone group is one layer below the head
    assert lrs["backbone0.group0.decay"] == 1e-3 * 0.5**5
    assert groups[0]["name"] == "head.decay"  # the Trainer logs the first group's learning rate
    # biases and BatchNorm weights take no weight decay, convolution and linear weights do
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for parameter in group["params"]:
            assert group["weight_decay"] == (0.0 if parameter.ndim == 1 else 0.05), names[id(parameter)]


def test_layer_decay_matches_timms_own_param_groups_for_a_vit():
    """For a ViT, timm's fine layer groups (stem, blocks, norm) are the backbone's layer groups: same scales."""
    vit = timm.create_model("test_vit", num_classes=2)
    timm_groups = timm_param_groups_layer_decay(
        vit, weight_decay=0.05, layer_decay=0.5, no_weight_decay_list=vit.no_weight_decay()
    )
    names = {id(p): n for n, p in vit.named_parameters()}
    expected = {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in timm_groups for p in g["params"]}
    model = TransferForImageClassification.from_backbones("timm:test_vit", pretrained=False, num_labels=2)
    names = {
        id(p): n.removeprefix("transfer.backbones.0.model.").replace("head.layers.1.", "head.")
        for n, p in model.named_parameters()
    }
    groups = param_groups_layer_decay(model, 1.0, weight_decay=0.05, layer_decay=0.5)
    assert {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]} == expected


def test_layer_decay_groups_follow_the_formula_for_a_text_backbone(bert_dir):
    model = TransferForSequenceClassification.from_backbones(bert_dir, num_labels=2)
    groups = param_groups_layer_decay(model, 2e-5, weight_decay=0.01, layer_decay=0.8)
    # embeddings, encoder layers 0 and 1, then the pooler
    assert len(model.transfer.backbones[0].layer_groups()) == 4
    assert_groups_follow_formula(groups, model, 2e-5, 0.8, 1.0)
    no_decay = {
        n
        for n, p in model.named_parameters()
        if any(p is q for g in groups if g["weight_decay"] == 0 for q in g["params"])
    }
    assert "transfer.backbones.0.model.embeddings.LayerNorm.weight" in no_decay
    assert "transfer.backbones.0.model.encoder.layer.0.attention.self.query.bias" in no_decay
    assert "transfer.backbones.0.model.encoder.layer.0.attention.self.query.weight" not in no_decay


def test_layer_decay_leaves_frozen_parameters_out_unless_asked():
    model = image_model(freeze="partial", num_frozen_groups=2)
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    groups = param_groups_layer_decay(model, 1e-3, 0.0, layer_decay=0.75)
    assert frozen and not frozen & {id(p) for g in groups for p in g["params"]}
    groups = param_groups_layer_decay(model, 1e-3, 0.0, layer_decay=0.75, include_frozen=True)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_no_weight_decay_patterns_and_fused_backbones_decay_separately():
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=2, fusion="concat", fusion_dim=16
    )
    groups = param_groups_layer_decay(
        model, 1.0, 0.1, layer_decay=0.5, head_lr_multiplier=3.0, no_weight_decay=["head.*"]
    )
    assert_groups_follow_formula(groups, model, 1.0, 0.5, 3.0)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    vit = model.transfer.backbones[1].model
    assert decay_of[id(vit.pos_embed)] == 0.0  # listed by timm's `no_weight_decay()`
    assert decay_of[id(model.head.layers[-1].weight)] == 0.0  # the user's pattern
    assert decay_of[id(model.transfer.fusion.projections[0].weight)] == 0.1  # fusion: head's lr, weight decay


class LearningRates(StepRecorder):
    def __init__(self):
        super().__init__(lambda model, optimizer: [group["lr"] for group in optimizer.param_groups])


@pytest.mark.parametrize("optim, optimizer_class", [("adamw_torch", "AdamW"), ("sgd", "SGD"), ("rmsprop", "RMSprop")])
def test_transfer_trainer_builds_any_optim_on_the_groups_and_the_scheduler_keeps_their_ratios(
    optim, optimizer_class, tmp_path
):
    model = image_model()
    recorder = LearningRates()
    args = tiny_training_args(tmp_path, max_steps=4, optim=optim, weight_decay=0.05, lr_scheduler_type="linear")
    trainer = TransferTrainer(
        model=model,
        args=args,
        train_dataset=SeparableImages(64),
        layer_decay=0.5,
        head_lr_multiplier=4.0,
        callbacks=[recorder],
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    assert type(trainer.optimizer).__name__ == optimizer_class
    groups = trainer.optimizer.param_groups
    assert_groups_follow_formula(groups, model, args.learning_rate, 0.5, 4.0)
    initial = [group["lr"] for group in groups]

    trainer.train()
    assert sorted(recorder.by_step) == [1, 2, 3, 4]
    for step, lrs in recorder.by_step.items():
        factor = (4 - step) / 4  # linear decay to 0 over 4 steps
        assert lrs == pytest.approx([lr * factor for lr in initial], rel=1e-12, abs=1e-15), step


def test_transfer_trainer_falls_back_to_the_trainer_for_other_models(bert_dir, tmp_path):
    model = BertForSequenceClassification.from_pretrained(bert_dir, num_labels=2)
    plain = TransferTrainer(model=model, args=tiny_training_args(tmp_path), train_dataset=SeparableText(16))
    assert len(plain.create_optimizer().param_groups) == 2  # the Trainer's decay / no-decay groups
    decayed = TransferTrainer(
        model=model, args=tiny_training_args(tmp_path), train_dataset=SeparableText(16), layer_decay=0.5
    )
    with pytest.raises(TypeError, match="need an hf_transfer model; BertForSequenceClassification"):
        decayed.create_optimizer()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layer_decay": 0.0}, r"layer_decay must be in \(0, 1\] .*got 0.0"),
        ({"layer_decay": 1.5}, r"layer_decay must be in \(0, 1\] .*got 1.5"),
        ({"layer_decay": -0.2}, r"layer_decay must be in \(0, 1\] .*got -0.2"),
        ({"layer_decay": 0.5, "head_lr_multiplier": 0.0}, r"head_lr_multiplier must be > 0, got 0.0"),
    ],
)
def test_layer_decay_rejects_bad_values(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        param_groups_layer_decay(image_model(), 1e-3, 0.0, **kwargs)
    with pytest.raises(ValueError, match=message):
        TransferTrainer(model=image_model(), args=tiny_training_args(tmp_path), **kwargs)


# ------------------------------------------------------------------------------------------- gradual unfreezing


def test_unfreezing_schedule_counts_groups_from_the_top():
    schedule = GradualUnfreezingCallback(frozen_for=2, interval=3, groups_per_stage=2, unit="step")
    assert [schedule.trainable_groups(step, 5) for step in range(12)] == [0, 0, 2, 2, 2, 4, 4, 4, 5, 5, 5, 5]
    limited = GradualUnfreezingCallback(frozen_for=0.5, interval=0.5, max_trainable_groups=2)
    assert [limited.trainable_groups(epoch, 5) for epoch in (0, 0.49, 0.5, 0.99, 1.0, 3.0)] == [0, 0, 1, 1, 2, 2]


def batch_norm_statistics(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.transfer.backbones[0].state_dict().items() if "running_" in k}


@pytest.mark.parametrize("freeze_bn_stats", [False, True])
def test_freeze_bn_stats_keeps_the_source_statistics_while_every_weight_trains(freeze_bn_stats, tmp_path):
    model = image_model()
    statistics, weights = batch_norm_statistics(model), clone_state(model.transfer.backbones[0])
    trainer = TransferTrainer(
        model=model,
        args=tiny_training_args(tmp_path, max_steps=3),
        train_dataset=SeparableImages(48),
        freeze_bn_stats=freeze_bn_stats,
    )
    trainer.train()
    moved = {k for k, v in batch_norm_statistics(model).items() if not torch.equal(v, statistics[k])}
    assert bool(moved) is not freeze_bn_stats  # without the option the target batches overwrite them
    after = clone_state(model.transfer.backbones[0])
    trained = {
        k for k in weights if "running_" not in k and "num_batches" not in k and not torch.equal(weights[k], after[k])
    }
    assert any(k.endswith("bn1.weight") for k in trained) and any(k.endswith("conv1.weight") for k in trained)
    if freeze_bn_stats:  # and every model model_init builds (one per hyperparameter-search trial)
        trainer = TransferTrainer(
            model_init=lambda: image_model(1), args=tiny_training_args(tmp_path), freeze_bn_stats=True
        )
        trial_model = trainer.call_model_init()
        assert trial_model is not trainer.model and trial_model.transfer.backbones[0].freeze_bn_stats


def test_freeze_bn_stats_refuses_models_it_cannot_change(bert_dir, tmp_path):
    text_model = TransferForSequenceClassification.from_backbones(bert_dir, num_labels=2)
    with pytest.raises(ValueError, match=r"freeze_bn_stats: the backbones \(TransformersBackbone\) have no BatchNorm"):
        TransferTrainer(model=text_model, args=tiny_training_args(tmp_path), freeze_bn_stats=True)
    plain = BertForSequenceClassification.from_pretrained(bert_dir, num_labels=2)
    with pytest.raises(
        TypeError, match="freeze_bn_stats needs an hf_transfer model, got BertForSequenceClassification"
    ):
        TransferTrainer(model=plain, args=tiny_training_args(tmp_path), freeze_bn_stats=True)


def test_gradual_unfreezing_trains_each_group_only_after_its_stage(tmp_path):
    model = image_model()
    backbone = model.transfer.backbones[0]
    keys = group_state_keys(backbone)
    builds_graph = []
    backbone.register_forward_hook(lambda module, args, output: builds_graph.append(output.requires_grad))

    def record(model, optimizer):
        return clone_state(backbone), [
            any(p in optimizer.state for n, p in backbone.named_parameters() if n in group) for group in keys
        ]

    recorder = StepRecorder(record)
    unfreezing = GradualUnfreezingCallback(frozen_for=2, interval=2, groups_per_stage=2, unit="step")
    trainer = TransferTrainer(
        model=model,
        args=tiny_training_args(tmp_path, max_steps=6, weight_decay=0.1),
        train_dataset=SeparableImages(96),
        callbacks=[unfreezing, recorder],
    )
    assert not any(p.requires_grad for p in backbone.parameters())  # frozen before the optimizer is built
    initial = clone_state(backbone)
    head = clone_state(model.head)
    trainer.train()

    def changed(before, after, group):
        return {k for k in group if not torch.equal(before[k], after[k])}

    state2, has_state2 = recorder.by_step[2]
    state4, has_state4 = recorder.by_step[4]
    state6, has_state6 = recorder.by_step[6]
    # steps 1-2: head only; the backbone runs without autograd graph and nothing in it moves, BatchNorm included
    assert builds_graph[:2] == [False, False] and all(builds_graph[2:])
    assert all(not changed(initial, state2, group) for group in keys)
    assert has_state2 == [False] * 5
    assert not torch.equal(head["layers.1.weight"], model.head.layers[1].weight)
    # steps 3-4: the top two groups train and have optimizer state; the others stay put
    assert [bool(changed(state2, state4, group)) for group in keys] == [False, False, False, True, True]
    assert all(changed(state2, state4, group) == group for group in keys[3:])  # BatchNorm statistics move too
    assert has_state4 == [False, False, False, True, True]
    # steps 5-6: two more groups; the input group is never unfrozen within 6 steps
    assert [bool(changed(state4, state6, group)) for group in keys] == [False, True, True, True, True]
    assert has_state6 == [False, True, True, True, True]
    assert not changed(initial, state6, keys[0])
    assert model.config.backbones[0]["freeze"] == 1  # a saved checkpoint reloads with the freezing it ended with


def test_gradual_unfreezing_by_epoch_keeps_layer_decayed_learning_rates(tmp_path):
    model = image_model()
    backbone = model.transfer.backbones[0]
    groups = backbone.layer_groups()
    parameters = dict(backbone.named_parameters())

    def trainable_groups(model, optimizer):
        return sum(parameters[names[0]].requires_grad for names in groups)

    recorder = StepRecorder(trainable_groups)
    trainer = TransferTrainer(
        model=model,
        args=tiny_training_args(tmp_path, max_steps=-1, num_train_epochs=3, lr_scheduler_type="constant"),
        train_dataset=SeparableImages(32),  # 2 steps per epoch
        layer_decay=0.5,
        callbacks=[GradualUnfreezingCallback(frozen_for=1, interval=1, groups_per_stage=1), recorder],
    )
    trainer.train()
    assert recorder.by_step == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}
    lr_of = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert lr_of[id(parameters[groups[4][0]])] == trainer.args.learning_rate * 0.5
    assert lr_of[id(parameters[groups[3][0]])] == trainer.args.learning_rate * 0.25


def test_gradual_unfreezing_needs_an_optimizer_that_holds_the_frozen_groups(tmp_path):
    trainer = Trainer(
        model=image_model(),
        args=tiny_training_args(tmp_path),
        train_dataset=SeparableImages(32),
        callbacks=[GradualUnfreezingCallback(frozen_for=1, unit="step")],
    )
    with pytest.raises(ValueError, match="optimizer does not hold .* Train with hf_transfer.training.TransferTrainer"):
        trainer.train()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"unit": "batch"}, "Unknown unit 'batch'; valid values are: epoch, step"),
        ({"frozen_for": -1}, "frozen_for must be >= 0 epochs, got -1"),
        ({"interval": 0}, "interval must be > 0 epochs, got 0"),
        ({"unit": "step", "interval": 1.5}, "whole steps, got 1, 1.5"),
        ({"groups_per_stage": 0}, "groups_per_stage must be an integer >= 1, got 0"),
        ({"max_trainable_groups": 0}, "max_trainable_groups must be an integer >= 1 or None"),
    ],
)
def test_unfreezing_rejects_bad_schedules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradualUnfreezingCallback(**kwargs)


def test_unfreezing_rejects_schedules_that_do_not_fit_the_model_or_the_run(tmp_path):
    with pytest.raises(ValueError, match=r"backbones \[1\] out of range: the model has 1 backbone"):
        TransferTrainer(
            model=image_model(),
            args=tiny_training_args(tmp_path),
            callbacks=[GradualUnfreezingCallback(backbones=[1])],
        )
    trainer = TransferTrainer(
        model=image_model(),
        args=tiny_training_args(tmp_path, max_steps=3),
        train_dataset=SeparableImages(32),
        callbacks=[GradualUnfreezingCallback(frozen_for=3, unit="step")],
    )
    with pytest.raises(ValueError, match="frozen_for=3 steps but training lasts 3 steps: nothing would ever be"):
        trainer.train()


def test_gradual_unfreezing_resumes_from_a_checkpoint_at_the_right_stage(tmp_path):
    def run(output_dir, **overrides):
        model = image_model()
        trainer = TransferTrainer(
            model=model,
            args=tiny_training_args(output_dir, max_steps=4, save_strategy="steps", save_steps=2, **overrides),
            train_dataset=SeparableImages(32),
            layer_decay=0.5,
            callbacks=[GradualUnfreezingCallback(frozen_for=1, interval=1, groups_per_stage=2, unit="step")],
        )
        return model, trainer

    uninterrupted, trainer = run(tmp_path / "a")
    trainer.train()
    resumed, trainer = run(tmp_path / "b")
    # the optimizer's groups have the same shape before and after unfreezing, so its saved state loads back
    trainer.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.config.backbones[0]["freeze"] == uninterrupted.config.backbones[0]["freeze"] == "none"
    for key, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from modeling_utils import SeparableImages, tiny_training_args
from test_training import image_model
from hf_transfer.training import GradualUnfreezingCallback, TransferTrainer

model = image_model()
trainer = TransferTrainer(
    model=model,
    args=tiny_training_args({out!r}, max_steps=3, per_device_train_batch_size=8, gradient_accumulation_steps=2),
    train_dataset=SeparableImages(64),
    callbacks=[GradualUnfreezingCallback(frozen_for=1, interval=1, groups_per_stage=2, unit="step")],
)
trainer.train()
assert type(trainer.model_wrapped).__name__ == "DistributedDataParallel"
torch.save({{n: p.detach() for n, p in model.named_parameters()}}, {out!r} + f"/rank{{dist.get_rank()}}.pt")
# As recipes/finetune.py does: a process group left to interpreter teardown can abort a rank ("terminate called
# without an active exception", exit -6; seen once in CI).
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_gradual_unfreezing_under_ddp_keeps_processes_in_sync(tmp_path):
    """Groups unfrozen after DDP wrapped the model are outside its reducer: the callback averages their gradients."""
    script = tmp_path / "ddp_unfreezing.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    result = subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    initial = dict(image_model().named_parameters())
    unfrozen = "transfer.backbones.0.model.layer4.0.conv1.weight"  # trainable from step 2 on, after DDP wrapped
    assert not torch.equal(rank0[unfrozen], initial[unfrozen])
    assert [name for name in rank0 if not torch.equal(rank0[name], rank1[name])] == []


# ------------------------------------------------------------------------------------------------- distillation


def confident_teacher() -> TransferForImageClassification:
    """A fused ResNet + EfficientNet teacher with input-dependent, confident logits; reads pixel_values(_1)."""
    torch.manual_seed(1)
    teacher = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_efficientnet"], pretrained=False, num_labels=2, fusion_dim=16
    ).eval()
    images = SeparableImages(32, seed=1).images
    with torch.no_grad():  # a random head on random features gives logits near 0: scale them to a std of 3
        head = teacher.head.layers[-1]
        head.weight.normal_(0, 1.0)
        scale = 3.0 / teacher(pixel_values=images, pixel_values_1=images).logits.std()
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    return teacher


def kl_to_teacher(student, teacher, distiller, images) -> float:
    student.eval()
    with torch.no_grad():
        teacher_logits = teacher(**distiller.teacher_inputs({"pixel_values": images})).logits
        return distiller.distillation_loss(student(pixel_values=images).logits, teacher_logits).item()


def test_distillation_alone_pulls_the_student_toward_a_teacher_with_its_own_inputs(tmp_path):
    teacher = confident_teacher()
    assert teacher.transfer.input_names() == ["pixel_values", "pixel_values_1"]
    teacher_state = clone_state(teacher)
    student = image_model(seed=2)
    distiller = Distiller(teacher, alpha=0.0, temperature=2.0)
    # the batch carries the student's pixels only: the teacher's second backbone (another mean and std) gets its
    # own input made from them on the device
    dataset = SeparableImages(64, keys=("pixel_values",))
    images = dataset.images[:32]
    trainer = DistillationTrainer(
        model=student,
        args=tiny_training_args(tmp_path, max_steps=12),
        train_dataset=dataset,
        distiller=distiller,
    )
    assert set(distiller.derived_inputs) == {"pixel_values_1"}
    before = kl_to_teacher(student, teacher, distiller, images)
    trainer.train()
    after = kl_to_teacher(student, teacher, distiller, images)
    assert after < 0.3 * before, (before, after)
    # evaluation scores the student alone, with its own cross-entropy
    evaluation = SeparableImages(32, keys=("pixel_values",), seed=5)
    with torch.no_grad():
        expected = student(pixel_values=evaluation.images, labels=evaluation.labels).loss.item()
    assert trainer.evaluate(evaluation)["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(value, teacher.state_dict()[key]) for key, value in teacher_state.items())


def test_distillation_with_alpha_one_is_plain_training(tmp_path):
    plain = image_model(seed=3)
    Trainer(
        model=plain, args=tiny_training_args(tmp_path / "plain", max_steps=3), train_dataset=SeparableImages(96)
    ).train()
    distilled = image_model(seed=3)

    class Untouchable(torch.nn.Module):  # any teacher call would fail
        def forward(self, **inputs):
            raise AssertionError("the teacher must not run with alpha=1")

    DistillationTrainer(
        model=distilled,
        args=tiny_training_args(tmp_path / "distilled", max_steps=3),
        train_dataset=SeparableImages(96),
        distiller=Distiller(Untouchable(), alpha=1.0),
    ).train()
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(distilled.state_dict()[key], value, msg=key)


def test_distillation_loss_is_the_weighted_sum_of_cross_entropy_and_scaled_kl():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 5), torch.randn(8, 5) * 3, torch.randint(0, 5, (8,))
    distiller = Distiller(torch.nn.Linear(1, 1), alpha=0.3, temperature=2.0)
    cross_entropy = F.cross_entropy(student, labels)
    p_teacher = (teacher / 2).softmax(-1)
    kl = (p_teacher * (p_teacher.log() - (student / 2).log_softmax(-1))).sum(-1).mean()
    loss = distiller.loss(student, teacher, cross_entropy)
    torch.testing.assert_close(loss, 0.3 * cross_entropy + 0.7 * 4 * kl)


def test_transformers_teacher_reads_the_students_text_inputs(bert_dir, tmp_path):
    teacher = BertForSequenceClassification.from_pretrained(bert_dir, num_labels=2)
    teacher.train()  # the distiller puts it in eval mode
    teacher_state = clone_state(teacher)
    student = TransferForSequenceClassification.from_backbones(bert_dir, num_labels=2)
    before = clone_state(student)
    distiller = Distiller(teacher, alpha=0.5, temperature=2.0)
    teacher_inputs = distiller.teacher_inputs({"input_ids": 1, "attention_mask": 2, "labels": 3})
    assert teacher_inputs == {"input_ids": 1, "attention_mask": 2}
    DistillationTrainer(
        model=student,
        args=tiny_training_args(tmp_path, max_steps=3),
        train_dataset=SeparableText(48),
        distiller=distiller,
    ).train()
    assert not torch.equal(before["head.layers.1.weight"], student.head.layers[1].weight)
    assert not teacher.training
    assert all(torch.equal(value, teacher.state_dict()[key]) for key, value in teacher_state.items())


def test_the_teacher_normalizes_the_students_pixels_as_timms_distillation_teacher_does():
    from timm.task.distillation import DistillationTeacher

    teacher, student = confident_teacher(), image_model()
    distiller = Distiller(teacher)
    distiller.match_student(student)
    student_config, teacher_config = (model.config.backbones[-1]["data_config"] for model in (student, teacher))
    assert teacher.config.backbones[0]["data_config"] == student_config  # read as the student's: passed through
    pixels = torch.randn(4, 3, *student_config["input_size"][1:])
    inputs = distiller.teacher_inputs({"pixel_values": pixels, "labels": torch.zeros(4)})
    assert set(inputs) == {"pixel_values", "pixel_values_1"} and inputs["pixel_values"] is pixels

    class Pretrained(torch.nn.Module):
        pretrained_cfg = {"mean": teacher_config["mean"], "std": teacher_config["std"]}

    def channels(values):
        return torch.tensor(values).view(1, -1, 1, 1)

    timm_teacher = DistillationTeacher(Pretrained())
    expected = timm_teacher.normalize_input(pixels, channels(student_config["mean"]), channels(student_config["std"]))
    torch.testing.assert_close(inputs["pixel_values_1"], expected)


def test_mismatched_classes_fail_before_training(tmp_path):
    args = tiny_training_args(tmp_path)
    with pytest.raises(ValueError, match="predicts 3 classes and the student 2; logit distillation needs the same"):
        DistillationTrainer(model=image_model(), args=args, distiller=Distiller(image_model(num_labels=3)))
    teacher = image_model(id2label={0: "cat", 1: "dog"})
    with pytest.raises(ValueError, match=r"The teacher's classes \['cat', 'dog'\] differ from the student's"):
        DistillationTrainer(model=image_model(id2label={0: "dog", 1: "cat"}), args=args, distiller=Distiller(teacher))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -0.1}, r"alpha \(the weight of the task loss\) must be in \[0, 1\], got -0.1"),
        ({"alpha": 1.5}, r"alpha \(the weight of the task loss\) must be in \[0, 1\], got 1.5"),
        ({"temperature": 0}, "temperature must be > 0, got 0"),
        ({"temperature": -2.0}, "temperature must be > 0, got -2.0"),
    ],
)
def test_distiller_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Distiller(torch.nn.Linear(1, 1), **kwargs)


# ------------------------------------------------------------------------ the recipe: layer decay, unfreezing


def test_layer_decay_and_head_multiplier_set_each_param_groups_learning_rate(colour_data, tmp_path, recipe_trainers):
    out = tmp_path / "decay"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "none", "--dataset_name", colour_data]
        + ["--layer_decay", "0.5", "--head_lr_multiplier", "10", "--learning_rate", "0.01"]
        + ["--lr_scheduler_type", "constant", "--logging_steps", "1"]
        + ["--output_dir", out, "--do_train", "--max_steps", "2"]
    )
    trainer = recipe_trainers[0]
    backbone = trainer.model.transfer.backbones[0]
    groups = backbone.layer_groups()
    assert len(groups) == 5
    expected = {id(p): 0.01 * 10 for p in trainer.model.parameters()}  # head: lr × head_lr_multiplier
    parameters = dict(backbone.named_parameters())
    for k, names in enumerate(groups):  # backbone group k of K: lr × layer_decay ** (K - k)
        expected.update({id(parameters[name]): 0.01 * 0.5 ** (len(groups) - k) for name in names})
    optimizer_groups = trainer.optimizer.param_groups
    assert sorted(id(p) for g in optimizer_groups for p in g["params"]) == sorted(expected)
    for group in optimizer_groups:
        for parameter in group["params"]:
            assert group["lr"] == pytest.approx(expected[id(parameter)]), group["name"]
    lrs = {group["name"]: group["lr"] for group in optimizer_groups}  # weight decay 0: every group is "no_decay"
    assert lrs["head.no_decay"] == pytest.approx(0.1)
    assert lrs["backbone0.group4.no_decay"] == pytest.approx(0.01 * 0.5)
    assert lrs["backbone0.group0.no_decay"] == pytest.approx(0.01 * 0.5**5)
    # What the run logs (the first group's learning rate) is the head's.
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert logged == pytest.approx([0.1, 0.1])


def test_gradual_unfreezing_trains_only_the_unfrozen_top_groups(colour_data, tmp_path, recipe_trainers, caplog):
    out = tmp_path / "unfreeze"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "none", "--dataset_name", colour_data]
        + ["--gradual_unfreezing", "--unfreeze_after", "1", "--unfreeze_every", "1", "--num_train_epochs", "3"]
        + ["--learning_rate", "0.01", "--output_dir", out, "--do_train", "--do_eval"]
    )
    assert "Cached backbone features: off" in caplog.text
    trainer = recipe_trainers[0]
    groups = trainer.model.transfer.backbones[0].layer_groups()
    saved = load_file(out / "model.safetensors")
    moved = [
        any(
            not torch.equal(saved[f"transfer.backbones.0.{n}"], trainer.initial_state[f"transfer.backbones.0.{n}"])
            for n in names
        )
        for names in groups
    ]
    # Epoch 1: head only; epoch 2: + the top group; epoch 3: + the one below it. The rest never trained.
    assert moved == [False] * (len(groups) - 2) + [True, True]
    assert "eval_accuracy" in json.loads((out / "all_results.json").read_text())


# ---------------------------------------------------------------------------------------------------- distillation


def test_distillation_alone_teaches_the_student_what_a_saved_fusion_teacher_predicts(
    colour_data, shifted_colour_data, tmp_path, recipe_trainers
):
    """The teacher learned to call each colour by the next class's name; with --distill_alpha 0 the student, trained
    on the true labels, learns the teacher's answers instead of the labels.

    As with a ResNet-18 + VGG16 teacher and a ResNet-18 student, the teacher's backbones preprocess images unlike the
    student (here: another size, and one of them another interpolation); the recipe derives their inputs from the
    student's pixels."""
    teacher = tmp_path / "teacher"
    fusion = ("timm:test_resnet", "timm:test_vit")
    run(
        probe(shifted_colour_data, teacher, "--fusion", "weighted_sum", "--fusion_dim", "16", "--image_size", "48")
        + ["--backbone", *fusion]
    )
    backbones = json.loads((teacher / "config.json").read_text())["backbones"]
    assert [b["input_suffix"] for b in backbones] == ["", "_1"]  # bilinear test_resnet, bicubic test_vit

    student = tmp_path / "student"
    distill = ["--teacher", teacher, "--distill_alpha", "0", "--freeze", "none", "--learning_rate", "0.01"]
    results = run(probe(colour_data, student, *distill, backbones=("timm:test_vit",), seed=3))  # fully fine-tuned
    assert isinstance(recipe_trainers[-1], finetune.DistillationTrainer)

    inputs, labels = validation_inputs(colour_data, student)  # 32 px
    teacher_logits = logits(
        teacher, validation_inputs(colour_data, teacher)[0]
    )  # 48 px, the teacher's own preprocessing
    assert (teacher_logits.argmax(-1) == (labels + 1) % 10).float().mean() >= 0.8  # a teacher worth following

    def kl_to_teacher(state: dict | None) -> float:
        student_log_probs = logits(student, inputs, state).log_softmax(-1)
        return F.kl_div(
            student_log_probs, teacher_logits.log_softmax(-1), log_target=True, reduction="batchmean"
        ).item()

    before, after = kl_to_teacher(recipe_trainers[-1].initial_state), kl_to_teacher(None)
    assert after < 0.2 * before, (before, after)
    agreement = (logits(student, inputs).argmax(-1) == teacher_logits.argmax(-1)).float().mean()
    assert agreement >= 0.8 and results["eval_accuracy"] <= 0.2, (agreement, results["eval_accuracy"])
