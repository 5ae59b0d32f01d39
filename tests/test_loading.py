"""Loading pretrained backbones: every checkpoint format arrives with every weight, or the load is an error.

The checkpoints are written by the tools that write them in the wild: transformers' TimmWrapper `save_pretrained`,
timm's `save_for_hf`, transformers' own models, `torch.save` / safetensors weights files.
"""

import json
from pathlib import Path

import pytest
import timm
import torch
from modeling_utils import clone_state, save_tiny_bert
from safetensors.torch import load_file, save_file
from test_modeling import _fresh_process_check, _save_with_logits
from timm.models import save_for_hf
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
    TimmWrapperModel,
    ViTConfig,
    ViTForImageClassification,
)

from hf_transfer import (
    BackboneSpec,
    TransferConfig,
    TransferForClassification,
    TransferForImageClassification,
    TransferModel,
)

ARCHS = ["test_resnet", "test_vit"]
PIXELS = 160  # both tiny timm models' pretrained_cfg input size (test_vit's patch embedding is fixed to it)


def _move_off_init(model: torch.nn.Module, seed: int = 1) -> None:
    """Adds noise to every float tensor (BatchNorm statistics included), so that a tensor that was silently left at
    a random init cannot pass for a loaded one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator).abs() * 0.1)


def _timm_config_dict(arch: str, tmp_path) -> dict:
    """config.json as timm writes it for `arch` (a Hub `timm/...` repo holds one like it)."""
    folder = tmp_path / f"timm_config_{arch}"
    save_for_hf(timm.create_model(arch, num_classes=5), str(folder), safe_serialization=True)
    return json.loads((folder / "config.json").read_text())


def save_timm_wrapper(tmp_path, arch: str, variant: str, with_head: bool = True) -> str:
    """A directory written by transformers' `TimmWrapperForImageClassification.save_pretrained` (or
    `TimmWrapperModel`'s, `with_head=False`), as transformers' example scripts write after fine-tuning.

    Variants of its config.json: `plain` (built from `TimmWrapperConfig(architecture=...)`: `"model_args": null`, no
    `pretrained_cfg`), `hub` (fine-tuned from a `timm/...` repo: `pretrained_cfg` and `"model_args": null`),
    `model_args` (a repo whose `model_args` transformers can take, i.e. without `num_classes`).
    """
    if variant == "plain":
        config = TimmWrapperConfig(architecture=arch, num_labels=3)
    else:
        timm_config = _timm_config_dict(arch, tmp_path)
        model_args = timm_config.pop("model_args")
        if variant == "model_args":
            timm_config["model_args"] = {k: v for k, v in model_args.items() if k != "num_classes"}
        config = TimmWrapperConfig.from_dict(timm_config, num_labels=3)
    torch.manual_seed(0)
    model = (TimmWrapperForImageClassification if with_head else TimmWrapperModel)(config)
    _move_off_init(model)
    folder = tmp_path / f"timm_wrapper_{arch}_{variant}_{'head' if with_head else 'base'}"
    model.save_pretrained(folder)
    return str(folder)


def save_timm_native(tmp_path, arch: str, safe: bool = True) -> str:
    """A directory written by timm's own `save_for_hf` (what `push_to_hf_hub` uploads), with a 5-class head."""
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=5)
    _move_off_init(model)
    folder = tmp_path / f"timm_native_{arch}_{'safetensors' if safe else 'bin'}"
    save_for_hf(model, str(folder), safe_serialization=safe)
    return str(folder)


def _features(model: TransferModel, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(pixel_values=pixels).pooler_output


# ------------------------------------------------------------------------------- transformers' TimmWrapper layout


@pytest.mark.parametrize("variant", ["plain", "hub", "model_args"])
@pytest.mark.parametrize("arch", ARCHS)
def test_timm_wrapper_checkpoint_loads_every_weight(tmp_path, arch, variant):
    folder = save_timm_wrapper(tmp_path, arch, variant)
    config = json.loads(open(f"{folder}/config.json").read())
    assert config["model_type"] == "timm_wrapper"
    assert (config["model_args"] is None) == (variant != "model_args")
    assert all(key.startswith("timm_model.") for key in load_file(f"{folder}/model.safetensors"))

    model = TransferModel.from_backbones(folder)
    reference = TimmWrapperModel.from_pretrained(folder).eval()
    # every tensor of the backbone is the checkpoint's
    state = model.backbones[0].model.state_dict()
    expected = reference.timm_model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    pixels = torch.randn(2, 3, PIXELS, PIXELS)
    with torch.no_grad():
        reference_features = reference(pixel_values=pixels).pooler_output
    torch.testing.assert_close(_features(model, pixels), reference_features, rtol=0, atol=0)
    assert model.config.backbones[0]["library"] == "timm"
    assert model.config.backbones[0]["config"]["architecture"] == arch


def test_timm_wrapper_base_model_checkpoint_loads(tmp_path):
    folder = save_timm_wrapper(tmp_path, "test_resnet", "plain", with_head=False)
    model = TransferForImageClassification.from_backbones(folder, num_labels=2)
    reference = TimmWrapperModel.from_pretrained(folder).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).pooler_output
    torch.testing.assert_close(_features(model.transfer, pixels), expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- timm's own layout


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("arch", ARCHS)
def test_timm_native_checkpoint_loads_every_weight(tmp_path, arch, safe):
    folder = save_timm_native(tmp_path, arch, safe=safe)
    assert "num_classes" in json.loads(open(f"{folder}/config.json").read())["model_args"]
    model = TransferModel.from_backbones(folder)
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    state = model.backbones[0].model.state_dict()
    assert set(state) == set(reference.state_dict())
    for key, value in reference.state_dict().items():
        assert torch.equal(state[key], value), key
    pixels = torch.randn(2, 3, PIXELS, PIXELS)
    with torch.no_grad():
        expected = reference(pixels)
    torch.testing.assert_close(_features(model, pixels), expected, rtol=0, atol=0)
    # the preprocessing timm recorded travels with the backbone
    assert model.config.backbones[0]["data_config"]["mean"] == [0.5, 0.5, 0.5]


# ------------------------------------------------------------------------- incomplete checkpoints are an error


def _edit_safetensors(path, drop=(), add=None, reshape=()):
    tensors = load_file(path)
    for key in drop:
        del tensors[key]
    for key in reshape:
        tensors[key] = torch.zeros(tensors[key].shape[0] + 1, *tensors[key].shape[1:])
    tensors.update(add or {})
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.mark.parametrize(
    "edit, named",
    [
        (dict(drop=["timm_model.layer1.0.conv1.weight"]), "missing from the checkpoint: layer1.0.conv1.weight"),
        (dict(add={"timm_model.extra.weight": torch.zeros(3)}), "unexpected .*: extra.weight"),
        (
            dict(reshape=["timm_model.bn1.running_mean"]),
            r"another shape: bn1.running_mean \(\(33,\) in the checkpoint, \(32,\) in the model\)",
        ),
    ],
    ids=["missing", "unexpected", "reshaped"],
)
def test_incomplete_timm_wrapper_checkpoint_is_an_error_naming_the_tensor(tmp_path, edit, named):
    folder = save_timm_wrapper(tmp_path, "test_resnet", "model_args")
    _edit_safetensors(f"{folder}/model.safetensors", **edit)
    with pytest.raises(ValueError, match=named):
        TransferModel.from_backbones(folder)


def test_incomplete_timm_native_checkpoint_is_an_error(tmp_path):
    folder = save_timm_native(tmp_path, "test_vit")
    _edit_safetensors(f"{folder}/model.safetensors", drop=["blocks.0.attn.qkv.weight", "cls_token"])
    with pytest.raises(ValueError, match=r"missing from the checkpoint: ") as error:
        TransferModel.from_backbones(folder)
    assert "blocks.0.attn.qkv.weight" in str(error.value) and "cls_token" in str(error.value)


def test_random_init_of_a_timm_checkpoint_directory_reads_no_weights(tmp_path):
    folder = save_timm_wrapper(tmp_path, "test_resnet", "hub")
    (tmp_path / "timm_wrapper_test_resnet_hub_head" / "model.safetensors").unlink()
    model = TransferModel.from_backbones(BackboneSpec(folder, pretrained=False))
    assert model.config.backbones[0]["config"]["architecture"] == "test_resnet"


# ------------------------------------------------------------------------------------------------ weights files


def _weights_file(tmp_path, state_dict, name="weights.safetensors") -> str:
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state_dict.items()}, path)
    else:
        torch.save(state_dict, path)
    return str(path)


def _backbone_state(model: TransferModel) -> dict[str, torch.Tensor]:
    return model.backbones[0].model.state_dict()


@pytest.mark.parametrize(
    "layout",
    ["same_head", "other_head", "no_head", "ddp_prefix", "timm_wrapper_file", "ported_names"],
)
def test_weights_file_loads_every_backbone_weight(tmp_path, layout):
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", num_classes=0 if layout == "no_head" else 10)
    _move_off_init(source)
    state = source.state_dict()
    if layout == "same_head":
        source = timm.create_model("test_resnet")  # timm's default 1000 classes, as the model is built
        _move_off_init(source)
        state = source.state_dict()
    elif layout == "ddp_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    elif layout == "timm_wrapper_file":
        state = {f"timm_model.{k}": v for k, v in state.items()}
    elif layout == "ported_names":  # another codebase's names, same tensors in the same order, 10 classes
        state = {f"port_{i}": v for i, v in enumerate(state.values())}
    # safetensors files keep no tensor order: an in-order match needs a pickled state dict
    pickled = layout in ("ddp_prefix", "ported_names")
    path = _weights_file(tmp_path, state, "weights.pth" if pickled else "weights.safetensors")
    model = TransferModel.from_backbones(BackboneSpec("test_resnet", weights=path))
    loaded = _backbone_state(model)
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_weights_file_missing_a_backbone_tensor_is_an_error_naming_it(tmp_path):
    state = timm.create_model("test_resnet").state_dict()
    del state["layer2.0.conv2.weight"]
    path = _weights_file(tmp_path, state)
    with pytest.raises(ValueError, match=r"weights.safetensors .*missing from the checkpoint: layer2.0.conv2.weight"):
        TransferModel.from_backbones(BackboneSpec("test_resnet", weights=path))


def test_weights_file_of_another_architecture_is_an_error(tmp_path):
    path = _weights_file(tmp_path, timm.create_model("test_vit").state_dict())
    with pytest.raises(ValueError, match=r"missing from the checkpoint: .*unexpected"):
        TransferModel.from_backbones(BackboneSpec("test_resnet", weights=path))


# ------------------------------------------------------------------------------------ transformers checkpoints


def _tiny_bert_config() -> BertConfig:
    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=100)


def test_transformers_checkpoint_missing_a_tensor_is_an_error_naming_it(tmp_path):
    folder = save_tiny_bert(tmp_path / "bert")
    _edit_safetensors(f"{folder}/model.safetensors", drop=["encoder.layer.1.output.dense.weight"])
    with pytest.raises(ValueError, match=r"missing from the checkpoint: encoder.layer.1.output.dense.weight"):
        TransferModel.from_backbones(folder)


def test_transformers_checkpoint_with_an_unexpected_backbone_tensor_is_an_error(tmp_path):
    folder = save_tiny_bert(tmp_path / "bert")
    _edit_safetensors(f"{folder}/model.safetensors", add={"encoder.layer.7.output.dense.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"unexpected: encoder.layer.7.output.dense.weight"):
        TransferModel.from_backbones(folder)


def test_pretraining_checkpoint_loads_its_base_model_and_leaves_out_its_heads(tmp_path):
    torch.manual_seed(0)
    source = BertForPreTraining(_tiny_bert_config())
    _move_off_init(source)
    source.save_pretrained(tmp_path / "bert_pretraining")
    model = TransferModel.from_backbones(str(tmp_path / "bert_pretraining"))
    assert model.config.backbones[0]["pooling"] == "pooler"  # its pooler is trained (next-sentence prediction)
    loaded = model.backbones[0].model.state_dict()
    expected = source.bert.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_checkpoint_without_a_pooler_pools_otherwise_and_refuses_the_random_pooler(tmp_path):
    torch.manual_seed(0)
    BertForMaskedLM(_tiny_bert_config()).save_pretrained(tmp_path / "bert_mlm")  # saved without BertModel's pooler
    folder = str(tmp_path / "bert_mlm")
    assert not any(key.startswith("bert.pooler") for key in load_file(f"{folder}/model.safetensors"))
    model = TransferModel.from_backbones(folder)
    assert model.config.backbones[0]["pooling"] == "cls"
    assert model.backbones[0].model.pooler is None
    with pytest.raises(ValueError, match=r"missing from the checkpoint: pooler.dense.bias, pooler.dense.weight"):
        TransferModel.from_backbones(folder, pooling="pooler")


def test_vit_classifier_checkpoint_loads_without_its_pooler(tmp_path):
    """ViTForImageClassification checkpoints (the usual `google/vit-...` fine-tunes) hold no pooler: the CLS token
    is used, and nothing is missing."""
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    source = ViTForImageClassification(config)
    _move_off_init(source)
    source.save_pretrained(tmp_path / "vit")
    model = TransferModel.from_backbones(str(tmp_path / "vit"))
    assert model.config.backbones[0]["pooling"] == "cls"
    loaded = model.backbones[0].model.state_dict()
    for key, value in source.vit.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_hf_transfer_checkpoint_missing_a_backbone_tensor_is_an_error(tmp_path):
    model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    model.save_pretrained(tmp_path / "saved")
    _edit_safetensors(tmp_path / "saved" / "model.safetensors", drop=["transfer.backbones.0.model.bn1.weight"])
    with pytest.raises(ValueError, match=r"missing from the checkpoint: backbones.0.model.bn1.weight"):
        TransferModel.from_backbones(str(tmp_path / "saved"))
    # its own head is left out (a new one is built), not an error
    model.save_pretrained(tmp_path / "complete")
    TransferForImageClassification.from_backbones(str(tmp_path / "complete"), num_labels=3)


@pytest.mark.parametrize("library", ["timm", "transformers"])
def test_random_init_of_a_saved_hf_transfer_model_is_not_its_trained_weights(tmp_path, library):
    """--random_init / the guard's reference on a saved hf_transfer model: its architecture, the library's own init."""
    if library == "timm":
        spec = BackboneSpec("timm:test_resnet", pretrained=False)
    else:
        spec = BackboneSpec(str(save_tiny_bert(tmp_path / "bert")))
    saved = TransferForClassification.from_backbones(spec, num_labels=2)
    _move_off_init(saved)
    saved.save_pretrained(tmp_path / "saved")
    trained = clone_state(saved.transfer.backbones[0])
    torch.manual_seed(0)
    fresh = TransferModel.from_backbones(BackboneSpec(str(tmp_path / "saved"), pretrained=False))
    assert fresh.config.backbones[0]["pretrained"] is False
    state = fresh.backbones[0].state_dict()
    assert state.keys() == trained.keys()
    floats = [k for k, v in trained.items() if v.is_floating_point() and v.numel() > 1]
    assert not any(torch.equal(state[k], trained[k]) for k in floats)
    reloaded = TransferModel.from_backbones(str(tmp_path / "saved"))
    assert reloaded.config.backbones[0]["pretrained"] is True
    for key, value in trained.items():
        torch.testing.assert_close(reloaded.backbones[0].state_dict()[key], value, msg=key)


# ------------------------------------------------------------------ tensors a checkpoint lacks at from_pretrained


def test_timm_tensors_missing_at_from_pretrained_get_timm_init_not_garbage(tmp_path):
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=2
    )
    saved_state = clone_state(model)
    model.save_pretrained(tmp_path / "saved")
    dropped = [
        "transfer.backbones.0.model.conv1.0.weight",  # a parameter
        "transfer.backbones.0.model.bn1.running_var",  # a persistent buffer
        "transfer.backbones.1.model.cls_token",  # a parameter held by the timm model itself
        "head.layers.1.weight",  # the head: transformers' own init
    ]
    _edit_safetensors(tmp_path / "saved" / "model.safetensors", drop=dropped)
    reloaded, info = TransferForImageClassification.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert set(info["missing_keys"]) == set(dropped)  # reported as newly initialised, as transformers does
    state = reloaded.state_dict()
    for key, value in saved_state.items():
        if key not in dropped:
            assert torch.equal(state[key], value), key
    fresh_resnet = timm.create_model("test_resnet", num_classes=0)
    fresh_vit = timm.create_model("test_vit", num_classes=0)
    conv = state["transfer.backbones.0.model.conv1.0.weight"]
    assert torch.isfinite(conv).all()
    # timm's init (kaiming normal), not uninitialised memory
    assert conv.std().item() == pytest.approx(fresh_resnet.conv1[0].weight.std().item(), rel=0.25)
    assert torch.equal(state["transfer.backbones.0.model.bn1.running_var"], fresh_resnet.bn1.running_var)
    cls_token = state["transfer.backbones.1.model.cls_token"]
    assert cls_token.abs().max().item() < 1e-4  # timm's ViT: normal(std=1e-6)
    assert fresh_vit.cls_token.abs().max().item() < 1e-4
    head = state["head.layers.1.weight"]
    assert head.std().item() == pytest.approx(reloaded.config.initializer_range, rel=0.5)
    pixels = torch.randn(2, 3, PIXELS, PIXELS)
    with torch.no_grad():
        logits = reloaded.eval()(pixel_values=pixels, pixel_values_1=pixels).logits
    assert torch.isfinite(logits).all()


def test_non_persistent_timm_buffers_are_restored_at_from_pretrained(tmp_path):
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones("timm:test_vit", pretrained=False, num_labels=2)
    pixels = torch.randn(2, 3, PIXELS, PIXELS)
    model_dir, inputs_file = _save_with_logits(model, {"pixel_values": pixels}, tmp_path)
    reloaded = TransferForImageClassification.from_pretrained(model_dir).eval()
    for (name, expected), (_, buffer) in zip(model.named_buffers(), reloaded.named_buffers()):
        assert torch.equal(buffer, expected), name
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, torch.load(inputs_file)["logits"])


# ---------------------------------------------------------------------------------- round trip, fresh process


def test_model_on_timm_checkpoints_round_trips_in_a_fresh_process(tmp_path):
    wrapper = save_timm_wrapper(tmp_path, "test_resnet", "hub")
    native = save_timm_native(tmp_path, "test_vit")
    model = TransferForImageClassification.from_backbones([wrapper, native], num_labels=3, fusion="gated")
    reference = TimmWrapperModel.from_pretrained(wrapper).timm_model.state_dict()
    for key, value in reference.items():  # the backbones arrived with their weights...
        assert torch.equal(model.transfer.backbones[0].model.state_dict()[key], value), key
    pixels = torch.randn(2, 3, PIXELS, PIXELS)
    inputs = {name: pixels for name in model.transfer.input_names()}
    model_dir, inputs_file = _save_with_logits(model, inputs, tmp_path)
    # ...and every tensor and the logits come back in a new interpreter
    assert "OK TransferForImageClassification" in _fresh_process_check(
        model_dir, inputs_file, "AutoModelForImageClassification"
    )
    assert set(load_file(model_dir / "model.safetensors")) == set(model.state_dict())


# ------------------------------------------------------------------------------------------------------ Hub repos


def test_timm_checkpoints_load_from_hub_repos(hub_server, tmp_path):
    """The same two layouts as Hub repos (the loopback Hub of tests/conftest.py), pushed by transformers and timm."""
    import uuid

    from timm.models import push_to_hf_hub

    suffix = uuid.uuid4().hex[:8]
    wrapper_repo, native_repo = f"test-user/timm-wrapper-{suffix}", f"test-user/timm-native-{suffix}"
    torch.manual_seed(0)
    wrapper = TimmWrapperForImageClassification(TimmWrapperConfig(architecture="test_resnet", num_labels=3))
    _move_off_init(wrapper)
    wrapper.push_to_hub(wrapper_repo)
    native = timm.create_model("test_vit", num_classes=5)
    _move_off_init(native)
    push_to_hf_hub(native, native_repo)

    model = TransferModel.from_backbones([wrapper_repo, native_repo])
    pixels = torch.randn(2, 3, PIXELS, PIXELS)
    with torch.no_grad():
        expected = [
            TimmWrapperModel.from_pretrained(wrapper_repo).eval()(pixel_values=pixels).pooler_output,
            timm.create_model(f"hf-hub:{native_repo}", pretrained=True, num_classes=0).eval()(pixels),
        ]
        features = [backbone({"pixel_values": pixels}) for backbone in model.eval().backbones]
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------ the recipe


@pytest.mark.slow
def test_recipe_trains_on_a_timm_wrapper_checkpoint_with_its_weights(tmp_path):
    """`--backbone <TimmWrapper save_pretrained dir>` in recipes/finetune.py: the linear probe keeps the frozen
    backbone exactly as the checkpoint holds it."""
    import fixtures

    finetune = fixtures.load_recipe_script()
    folder = save_timm_wrapper(tmp_path, "test_resnet", "hub")
    data = fixtures.make_cifar10(tmp_path / "data", n_train=16, n_test=8)
    out = tmp_path / "out"
    argv = ["--backbone", folder, "--freeze", "backbone", "--dataset_name", str(data), "--output_dir", str(out)]
    finetune.main(argv + ["--do_train", "--max_steps", "1"] + fixtures.RECIPE_COMMON_FLAGS)
    saved = load_file(out / "model.safetensors")
    expected = load_file(f"{folder}/model.safetensors")
    expected = {k.replace("timm_model.", "transfer.backbones.0.model."): v for k, v in expected.items()}
    expected = {k: v for k, v in expected.items() if not k.startswith("transfer.backbones.0.model.fc.")}
    assert set(expected) <= set(saved)
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key


SAVED_CONFIG = Path(__file__).parent / "saved_configs" / "multimodal_config_before_typed_entries.json"


def test_a_config_saved_before_typed_backbone_entries_loads_and_builds_its_model(tmp_path):
    """tests/saved_configs/ holds a config.json written by `save_pretrained` before backbone entries were typed
    (a timm image backbone and two tiny BERTs, one frozen): it loads, keeps every recorded value, and builds a model
    that reads the inputs that config records."""
    saved = json.loads(SAVED_CONFIG.read_text())
    (tmp_path / "config.json").write_text(SAVED_CONFIG.read_text())

    config = TransferConfig.from_pretrained(tmp_path)

    for loaded, written in zip(config.backbones, saved["backbones"]):
        assert loaded == written  # nothing lost, nothing changed: every default was already recorded
    assert [entry["input_suffix"] for entry in config.backbones] == ["", "", "_2"]
    assert [config.backbone_freeze(i) for i in range(3)] == ["none", "backbone", "none"]
    model = TransferForClassification(config)
    assert model.transfer.input_names() == [
        "pixel_values",
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "input_ids_2",
        "attention_mask_2",
        "token_type_ids_2",
    ]
    assert not any(p.requires_grad for p in model.transfer.backbones[1].parameters())
    batch = {"pixel_values": torch.randn(2, 3, 32, 32)}
    for suffix in ("", "_2"):
        batch |= {f"input_ids{suffix}": torch.randint(5, 100, (2, 6)), f"attention_mask{suffix}": torch.ones(2, 6)}
    assert model(**batch).logits.shape == (2, 3)


def test_backbone_entries_get_their_defaults_once_and_bad_entries_are_named():
    old = {"source": "timm:test_resnet", "library": "timm", "modality": "image", "data_config": {"input_size": [3]}}
    config = TransferConfig(backbones=[old, {**old, "future_key": 1}])

    assert config.backbones[0] == {**old, "pooling": "auto", "freeze": None, "input_suffix": ""}
    assert config.backbones[1]["future_key"] == 1 and config.backbones[1]["input_suffix"] == ""  # kept, as saved
    assert "pooling" not in old  # the caller's dict is not edited
    with pytest.raises(Exception, match=r"Backbone 0 lacks \[.source.\]"):  # strict wraps the ValueError
        TransferConfig(backbones=[{"library": "timm", "modality": "image"}])
    with pytest.raises(ValueError, match="Unknown freeze 'all' for backbone 0"):
        config.set_backbone_freeze(0, "all")
    config.set_backbone_freeze(1, 2)
    assert config.backbone_freeze(1) == 2


def test_one_input_suffix_rule_for_the_model_and_the_data():
    """For [image, text, text] the model reads input_ids and input_ids_2 (the suffix counts all backbones), and the
    data pipeline, given entries without a recorded suffix, produces the same keys."""
    from fixtures import image_backbone, tiny_tokenizer

    from hf_transfer.data.inputs import _text_tokenizers
    from hf_transfer.inputs import input_suffixes

    image = image_backbone()
    entries = [{k: v for k, v in e.items() if k != "input_suffix"} for e in (image, {"modality": "text"})]
    entries.append({"modality": "text"})
    assert input_suffixes(entries) == ["", "", "_2"]
    assert input_suffixes([image, image_backbone(48)]) == ["", ""]  # a recorded suffix wins
    assert input_suffixes([entries[0], {**entries[0], "data_config": {"input_size": [3, 48, 48]}}]) == ["", "_1"]
    assert sorted(_text_tokenizers(entries, [tiny_tokenizer(), tiny_tokenizer()])) == ["", "_2"]


def test_from_backbones_sets_the_image_size_of_every_image_backbone():
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=2, fusion_dim=16, image_size=64
    )
    assert [entry["data_config"]["input_size"] for entry in model.config.backbones] == [[3, 64, 64]] * 2
    assert [entry["input_suffix"] for entry in model.config.backbones] == ["", "_1"]  # assigned at native sizes
    with pytest.raises(ValueError, match="image_size must be >= 1, got 0"):
        TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, image_size=0)
