"""LoRA on hf_transfer backbones (hf_transfer.lora): what trains, merging, reloading without peft, errors."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel
from torch import nn

from hf_transfer import TransferForImageClassification, TransferForSequenceClassification
from hf_transfer.lora import PeftArguments, apply_lora, merge_lora, save_adapter
from hf_transfer.training import TransferTrainer
from tests.modeling_utils import SeparableImages, SeparableText, save_tiny_bert, save_tiny_vit, tiny_training_args

LORA = PeftArguments(peft="lora", lora_r=4, lora_alpha=8)


def _lora_count(module: nn.Module, r: int) -> int:
    if isinstance(module, nn.Linear):
        return r * (module.in_features + module.out_features)
    return r * module.in_channels + module.out_channels * r  # 1x1 conv: A is (r, in, 1, 1), B is (out, r, 1, 1)


def _expected_targets(model):
    """Per backbone: the modules the defaults must pick, found independently of hf_transfer.lora."""
    found = []
    for backbone in model.transfer.backbones:
        names = {}
        for name, module in backbone.model.named_modules():
            timm = hasattr(backbone.model, "default_cfg")
            if isinstance(module, nn.Linear) and (timm or "attention" in name):
                names[name] = module
            elif timm and isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1:
                names[name] = module
        found.append(names)
    return found


def _vit_bert(tmp_path):
    return TransferForImageClassification.from_backbones(
        [save_tiny_vit(tmp_path / "vit"), "timm:test_resnet"], pretrained=False, num_labels=2, fusion="concat"
    )


@pytest.mark.parametrize("backbone", ["timm:test_resnet", "timm:test_vit", "timm:test_efficientnet", "hf_vit"])
def test_lora_trains_exactly_adapters_and_head(backbone, tmp_path):
    name = save_tiny_vit(tmp_path / "vit") if backbone == "hf_vit" else backbone
    model = TransferForImageClassification.from_backbones(name, pretrained=False, num_labels=3)
    expected = _expected_targets(model)
    head = sum(p.numel() for p in model.head.parameters())
    summary = apply_lora(model, LORA)

    assert [set(t) for t in summary.targets] == [set(e) for e in expected]
    assert all(expected), "no default target found"
    adapters = sum(_lora_count(m, 4) for e in expected for m in e.values())
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == adapters + head == summary.trainable_parameters
    assert all("lora_" in n or n.startswith("head.") for n in trainable)
    if backbone == "timm:test_efficientnet":  # depthwise convolutions are left alone
        depthwise = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert depthwise and not any(
            "lora_" in n for d in depthwise for n, _ in model.get_submodule(d).named_parameters()
        )


def test_text_defaults_are_attention_projections(tmp_path):
    model = TransferForSequenceClassification.from_backbones(save_tiny_bert(tmp_path / "bert"), num_labels=2)
    summary = apply_lora(model, LORA)
    leaves = {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in summary.targets[0]}
    assert leaves == {"self.query", "self.key", "self.value", "output.dense"}
    assert all(".attention." in n for n in summary.targets[0])  # not the MLP's output.dense


def test_fusion_gets_lora_per_backbone_and_trains_fusion(tmp_path):
    model = _vit_bert(tmp_path)
    summary = apply_lora(model, LORA)
    assert len(summary.targets) == 2 and all(summary.targets)
    assert all(p.requires_grad for p in model.transfer.fusion.parameters())
    assert summary.backbone_fraction < 0.5


def test_trainer_trains_adapters_merged_logits_equal_and_labels_give_eval_loss(tmp_path):
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones("timm:test_vit", pretrained=False, num_labels=2)
    base = copy.deepcopy(model)
    apply_lora(model, LORA)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    data = SeparableImages(n=32, size=160)
    args = tiny_training_args(
        tmp_path / "out", max_steps=3, per_device_train_batch_size=8, gradient_checkpointing=True
    )
    trainer = TransferTrainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    assert "eval_loss" in trainer.evaluate()
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n), "adapters did not train"

    model.eval()
    batch = torch.stack([data[i]["pixel_values"] for i in range(4)])
    with torch.no_grad():
        unmerged = model(pixel_values=batch).logits
    save_adapter(model, tmp_path / "adapter")
    merge_lora(model)
    assert not any("lora_" in n or "base_layer" in n for n in model.state_dict())
    assert set(model.state_dict()) == set(base.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=batch).logits, unmerged, atol=1e-5, rtol=1e-4)

    # The adapter in PEFT's format rebuilds the fine-tuned model on the pretrained one.
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(pixel_values=batch).logits, unmerged, atol=1e-5, rtol=1e-4)


def test_merged_text_model_reloads_without_peft_in_pipeline(tmp_path):
    model = TransferForSequenceClassification.from_backbones(save_tiny_bert(tmp_path / "bert"), num_labels=2)
    apply_lora(model, LORA)
    args = tiny_training_args(tmp_path / "out", max_steps=2, per_device_train_batch_size=8)
    TransferTrainer(model=model, args=args, train_dataset=SeparableText(n=16)).train()
    merge_lora(model)
    model.save_pretrained(tmp_path / "merged")
    model.eval()
    ids = torch.tensor([[2, 10, 60, 3]])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].tolist()
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.modules["peft"] = None  # peft cannot be imported in this process
        from transformers import AutoModelForSequenceClassification
        import hf_transfer  # registers the Auto classes
        model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "merged")!r}).eval()
        ids = torch.tensor([[2, 10, 60, 3]])
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        torch.testing.assert_close(logits, torch.tensor({expected}), atol=1e-5, rtol=1e-4)
        try:
            import peft  # noqa: F401
        except ImportError:
            print("OK without peft")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK without peft" in result.stdout


def test_resume_from_a_lora_checkpoint(tmp_path):
    def build():
        torch.manual_seed(0)
        model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
        apply_lora(model, LORA)
        return model

    data = SeparableImages(n=32)
    args = tiny_training_args(
        tmp_path / "out", max_steps=4, per_device_train_batch_size=8, save_strategy="steps", save_steps=2
    )
    straight = build()
    TransferTrainer(model=straight, args=args, train_dataset=data).train()
    resumed = build()
    TransferTrainer(model=resumed, args=args, train_dataset=data).train(
        resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2")
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_bad_targets_name_the_modules_that_exist():
    model = TransferForImageClassification.from_backbones("timm:test_vit", pretrained=False, num_labels=2)
    with pytest.raises(ValueError, match=r"match no .*qkv"):
        apply_lora(model, PeftArguments(peft="lora", lora_target_modules=["query"]))
    assert not any("lora_" in n for n, _ in model.named_parameters())


def test_lora_on_a_frozen_backbone_is_an_error():
    model = TransferForImageClassification.from_backbones(
        "timm:test_resnet", pretrained=False, num_labels=2, freeze="backbone"
    )
    with pytest.raises(ValueError, match="frozen"):
        apply_lora(model, LORA)


def test_bad_flags():
    with pytest.raises(ValueError, match="--peft"):
        PeftArguments(peft="ia3")
    with pytest.raises(ValueError, match="--lora_r"):
        PeftArguments(peft="lora", lora_r=0)


# ----------------------------------------------------------------------------------------------------------------------
# recipes/finetune.py with --peft lora, the regularizers and EMA
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from tests import fixtures

    root = tmp_path_factory.mktemp("data")
    fixtures.make_cifar10(root, n_train=32, n_test=16)
    return root / "cifar10"


def _recipe(argv):
    from tests import fixtures

    return fixtures.load_recipe_script().main([str(a) for a in argv] + fixtures.RECIPE_COMMON_FLAGS)


@pytest.mark.slow
def test_recipe_lora_saves_a_merged_model_and_the_adapter(cifar, tmp_path):
    from transformers import AutoModelForImageClassification

    out = tmp_path / "out"
    results = _recipe(
        ["--backbone", save_tiny_vit(tmp_path / "vit"), "--dataset_name", cifar, "--output_dir", out]
        + ["--do_train", "--do_eval"]
        + ["--max_steps", "2", "--peft", "lora", "--lora_r", "2", "--save_adapter", "--l2sp_weight", "0.01"]
        + ["--bss_weight", "0.001", "--ema_decay", "0.9", "--layer_decay", "0.8"]
    )
    assert "eval_loss" in results and "eval_accuracy" in results
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as weights:
        assert not any("lora_" in k or "base_layer" in k for k in weights.keys())
    model = AutoModelForImageClassification.from_pretrained(out)
    assert type(model).__name__ == "TransferForImageClassification"
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--peft", "lora", "--freeze", "backbone"], "frozen"),
        (["--peft", "lora", "--lora_target_modules", "nothing_like_this"], "match no"),
        (["--l2sp_weight", "0.01"], "random_init"),
        (["--peft", "lora", "--gradual_unfreezing"], "gradual_unfreezing"),
    ],
)
def test_recipe_rejects_bad_combinations_before_training(cifar, tmp_path, flags, message):
    argv = ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", cifar, "--output_dir", tmp_path]
    argv += ["--do_train"]
    with pytest.raises(ValueError, match=message):
        _recipe(argv + ["--max_steps", "1"] + flags)
    assert not list(tmp_path.glob("checkpoint-*"))


def test_gradient_checkpointing_of_a_transformers_backbone_still_trains_the_adapters(tmp_path):
    # Reentrant checkpointing only backpropagates into a segment whose inputs require grad, and the frozen embeddings'
    # output does not (apply_lora hooks it with enable_input_require_grads, as PEFT does; transformers 5.24's
    # checkpointing layers also cope without).
    model = TransferForSequenceClassification.from_backbones(save_tiny_bert(tmp_path / "bert"), num_labels=2)
    apply_lora(model, LORA)
    model.gradient_checkpointing_enable({"use_reentrant": True})
    assert model.is_gradient_checkpointing
    model.train()
    data = SeparableText(n=4)
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in ("input_ids", "attention_mask", "labels")}
    model(**batch).loss.backward()
    adapters = [(n, p) for n, p in model.named_parameters() if "lora_B" in n]  # lora_A gets 0: B starts at 0
    assert adapters and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in adapters)


@pytest.mark.slow
def test_recipe_lora_under_two_process_cpu_ddp(cifar, tmp_path):
    from tests import fixtures

    out = tmp_path / "ddp"
    command = fixtures.ACCELERATE_TWO_PROCESSES + [str(fixtures.RECIPE_SCRIPT)]
    command += [
        "--backbone",
        "timm:test_resnet",
        "--random_init",
        "--dataset_name",
        str(cifar),
        "--output_dir",
        str(out),
    ]
    command += ["--do_train", "--max_steps", "2", "--peft", "lora", "--ema_decay", "0.9", "--bss_weight", "0.001"]
    result = subprocess.run(command + fixtures.RECIPE_COMMON_FLAGS, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "world size: 2" in result.stdout + result.stderr
    assert "LoRA on" in result.stdout + result.stderr
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as weights:
        assert not any("lora_" in k for k in weights.keys())
