"""The arguments every transformers model takes (return_dict, output flags, dtype, attn_implementation, positional
inputs, PEFT's arguments, token embeddings, gradient checkpointing, device_map), on tiny real backbones."""

import pytest
import torch
from modeling_utils import save_tiny_bert, save_tiny_vit

from hf_transfer import TransferForImageClassification, TransferForSequenceClassification

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return save_tiny_vit(tmp_path_factory.mktemp("vit"))


def _text(bert_dir, **kwargs):
    torch.manual_seed(0)
    return TransferForSequenceClassification.from_backbones(bert_dir, num_labels=2, **kwargs).eval()


def _ids():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 100, (2, 6), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -2:] = 0
    return input_ids, attention_mask, torch.zeros_like(input_ids)


def test_return_dict_false_gives_tuple_and_config_is_honoured(bert_dir):
    model = _text(bert_dir)
    input_ids, mask, _ = _ids()
    loss, logits = model(input_ids=input_ids, attention_mask=mask, labels=torch.tensor([0, 1]), return_dict=False)
    assert isinstance(loss, torch.Tensor) and logits.shape == (2, 2)
    model.config.return_dict = False
    assert isinstance(model(input_ids=input_ids), tuple)
    model.config.return_dict = True
    model.config.output_hidden_states = True
    hidden = model(input_ids=input_ids).hidden_states
    assert len(hidden) == 2 and hidden[0].shape == (2, 32)  # the backbone's pooled features, then the fused ones
    selected = model(input_ids=input_ids, output_hidden_states=[-1]).hidden_states
    assert selected[0] is None and torch.equal(selected[1], hidden[1])
    with pytest.raises(ValueError, match="out of range"):
        model(input_ids=input_ids, output_hidden_states=[2])


def test_output_attentions_returns_backbone_attentions(bert_dir):
    model = _text(bert_dir, attn_implementation="eager")
    input_ids, mask, _ = _ids()
    attentions = model(input_ids=input_ids, attention_mask=mask, output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (2, 2, 6, 6)  # 2 layers, (batch, heads, seq, seq)
    timm_model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    with pytest.raises(ValueError, match="timm models, which return no attention maps"):
        timm_model(pixel_values=torch.randn(1, 3, 32, 32), output_attentions=True)


def test_positional_inputs_in_bert_order(bert_dir):
    model = _text(bert_dir)
    input_ids, mask, token_type_ids = _ids()
    expected = model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids).logits
    torch.testing.assert_close(model(input_ids, mask, token_type_ids).logits, expected)
    torch.testing.assert_close(model(input_ids).logits, model(input_ids=input_ids).logits)
    image = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    loss, _ = image(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), return_dict=False)  # pixel_values, labels
    assert loss.dim() == 0


def test_bf16_from_pretrained_puts_every_backbone_in_bf16(tmp_path, vit_dir, bert_dir):
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", vit_dir], pretrained=False, num_labels=2
    )
    model.save_pretrained(tmp_path / "fp32")
    loaded = TransferForImageClassification.from_pretrained(tmp_path / "fp32", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    pixels = torch.randn(2, 3, 32, 32)  # fp32 images into a bf16 model are cast
    inputs = {name: pixels for name in loaded.get_base_model().input_names()}
    assert loaded(**inputs).logits.dtype == torch.bfloat16
    # a model saved in bf16 reloads in bf16 with the default dtype="auto"
    loaded.save_pretrained(tmp_path / "bf16")
    again = TransferForImageClassification.from_pretrained(tmp_path / "bf16")
    assert {p.dtype for p in again.parameters()} == {torch.bfloat16}
    text = _text(bert_dir)
    text.save_pretrained(tmp_path / "text")
    text = TransferForSequenceClassification.from_pretrained(tmp_path / "text", dtype=torch.bfloat16)
    assert text(_ids()[0]).logits.dtype == torch.bfloat16


def test_attn_implementation_reaches_every_backbone(tmp_path, bert_dir, vit_dir):
    model = TransferForImageClassification.from_backbones(
        [vit_dir, "timm:test_resnet"], pretrained=False, num_labels=2
    )
    vit = model.get_base_model().backbones[0].model
    assert model.config._attn_implementation == "sdpa" == vit.config._attn_implementation
    model.save_pretrained(tmp_path)
    eager = TransferForImageClassification.from_pretrained(tmp_path, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    assert eager.get_base_model().backbones[0].model.config._attn_implementation == "eager"
    sdpa = TransferForImageClassification.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert sdpa.get_base_model().backbones[0].model.config._attn_implementation == "sdpa"
    sdpa.set_attn_implementation("eager")
    assert sdpa.get_base_model().backbones[0].model.config._attn_implementation == "eager"
    built = _text(bert_dir, attn_implementation="eager")
    assert built.get_base_model().backbones[0].model.config._attn_implementation == "eager"


def test_peft_lora_seq_cls_forward_with_labels(bert_dir):
    peft = pytest.importorskip("peft")
    model = _text(bert_dir)
    lora = peft.get_peft_model(
        model, peft.LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=4, modules_to_save=["head"])
    )
    input_ids, mask, _ = _ids()
    outputs = lora(input_ids=input_ids, attention_mask=mask, labels=torch.tensor([0, 1]))
    outputs.loss.backward()
    assert any(p.grad is not None for n, p in lora.named_parameters() if "lora_" in n)


def test_auto_peft_model_reloads_an_adapter_of_a_from_backbones_model(tmp_path, bert_dir):
    peft = pytest.importorskip("peft")
    model = _text(bert_dir)
    assert not model.name_or_path  # exists nowhere yet
    model.save_pretrained(tmp_path / "checkpoint-1")
    model.save_pretrained(tmp_path / "base")
    assert model.name_or_path == str(tmp_path / "base")  # the latest save (older checkpoints may be rotated away)
    lora = peft.get_peft_model(
        model, peft.LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=4, modules_to_save=["head"])
    )
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # a trained adapter: its output differs from the base model's
    lora.eval()
    input_ids, mask, _ = _ids()
    expected = lora(input_ids=input_ids, attention_mask=mask).logits
    lora.save_pretrained(tmp_path / "adapter")
    reloaded = peft.AutoPeftModelForSequenceClassification.from_pretrained(str(tmp_path / "adapter")).eval()
    torch.testing.assert_close(reloaded(input_ids=input_ids, attention_mask=mask).logits, expected)


def test_token_embeddings_of_a_text_backbone(tmp_path, bert_dir):
    model = _text(bert_dir)
    embeddings = model.get_input_embeddings()
    assert embeddings is model.get_base_model().backbones[0].model.embeddings.word_embeddings
    model.resize_token_embeddings(110)
    assert model.get_input_embeddings().weight.shape[0] == 110 and model.config.vocab_size == 110
    model(torch.tensor([[105, 6]]))
    model.save_pretrained(tmp_path)
    reloaded = TransferForSequenceClassification.from_pretrained(tmp_path)
    assert reloaded.get_input_embeddings().weight.shape[0] == 110
    image = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    with pytest.raises(NotImplementedError, match="single text backbone"):
        image.get_input_embeddings()


@pytest.mark.parametrize("architecture", ["test_convnext", "test_resnet"])
def test_gradient_checkpointing_truth_for_timm(architecture):
    model = TransferForImageClassification.from_backbones(f"timm:{architecture}", pretrained=False, num_labels=2)
    assert not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing  # test_convnext sets the flag on its stages only
    model.train()
    model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1])).loss.backward()
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    with pytest.raises(ValueError, match="every_n_layers"):
        model.activation_checkpointing_enable(every_n_layers=2)
    with pytest.raises(ValueError, match="offload"):
        model.activation_checkpointing_enable(offload=True)
    with pytest.raises(ValueError, match="preserve_rng_state"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"preserve_rng_state": False})
    assert not model.is_gradient_checkpointing


def test_timm_gradient_checkpointing_honours_use_reentrant(monkeypatch):
    import timm.models._manipulate as manipulate

    model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    seen = []
    checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(
        torch.utils.checkpoint,
        "checkpoint",
        lambda *args, use_reentrant=None, **kwargs: (
            seen.append(use_reentrant) or checkpoint(*args, use_reentrant=use_reentrant, **kwargs)
        ),
    )
    assert manipulate.torch.utils.checkpoint.checkpoint is not checkpoint  # timm calls through the module
    model.train()
    pixels = torch.randn(2, 3, 32, 32, requires_grad=True)
    model(pixel_values=pixels, labels=torch.tensor([0, 1])).loss.backward()
    assert seen and set(seen) == {True}
    from timm.layers import use_reentrant_ckpt

    assert use_reentrant_ckpt() is False  # timm's process-wide setting is left as it was


def test_gradient_checkpointing_every_n_layers_reaches_transformers_backbone(bert_dir):
    model = _text(bert_dir)
    model.activation_checkpointing_enable(every_n_layers=2)
    layers = model.get_base_model().backbones[0].model.encoder.layer
    assert [layer.gradient_checkpointing for layer in layers] == [True, False]


@pytest.mark.parametrize(
    "backbones, fusion",
    [
        (["timm:test_resnet", "bert"], "concat"),
        (["timm:test_resnet", "vit"], "attention"),
        (["vit", "timm:test_vit"], "gated"),
    ],
)
def test_device_map_auto_offloads_a_fusion(tmp_path, bert_dir, vit_dir, backbones, fusion):
    paths = {"bert": bert_dir, "vit": vit_dir}
    model = TransferForImageClassification.from_backbones(
        [paths.get(name, name) for name in backbones], pretrained=False, num_labels=2, fusion=fusion
    ).eval()
    model.save_pretrained(tmp_path / "model")
    inputs = {name: torch.randn(2, 3, 32, 32) for name in model.get_base_model().input_names() if "pixel" in name}
    if "bert" in backbones:
        inputs["input_ids"], inputs["attention_mask"], _ = _ids()
    expected = model(**inputs).logits
    offloaded = TransferForImageClassification.from_pretrained(
        tmp_path / "model",
        device_map="auto",
        max_memory={"cpu": "1KB", "disk": "1GB"},  # forces offload to disk
        offload_folder=str(tmp_path / "offload"),
    )
    assert "disk" in set(offloaded.hf_device_map.values())
    with torch.no_grad():
        logits = offloaded(**inputs).logits
    torch.testing.assert_close(logits, expected)
