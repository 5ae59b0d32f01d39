"""The processor saved with every model: what `pipeline()`, `AutoProcessor`, `AutoImageProcessor` and `AutoTokenizer`
users get, with and without hf_transfer installed."""

import json
import shutil
import subprocess
import sys
import textwrap

import fixtures as fx
import numpy as np
import PIL.Image
import pytest
import torch
from modeling_utils import save_tiny_bert, save_tiny_vit
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
    pipeline,
)

from hf_transfer import (
    TransferForImageClassification,
    TransferForSequenceClassification,
    TransferImageProcessor,
    TransferProcessor,
    TransferTokenizer,
)
from hf_transfer.data import build_image_transforms
from hf_transfer.processing import build_processor, image_processor_for, load_processors, save_processors

pytestmark = pytest.mark.usefixtures("one_thread")


def _timm_spec(size: int, **data_config) -> dict:
    spec = fx.image_backbone(size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), library="timm")
    spec["data_config"].update(data_config)
    return spec


def _run_fresh(script: str, hf_transfer_absent: bool = False) -> str:
    """Runs `script` in a new interpreter; with `hf_transfer_absent`, `import hf_transfer` fails there."""
    prelude = ""
    if hf_transfer_absent:
        prelude = textwrap.dedent(
            """
            import sys
            sys.modules["hf_transfer"] = None  # as if not installed: `import hf_transfer` raises ImportError
            try:
                import hf_transfer
                raise SystemExit("hf_transfer should not be importable here")
            except ImportError:
                pass
            """
        )
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-4000:]
    return result.stdout


def _scores(output: str) -> dict:
    assert "Do you wish to run the custom code" not in output  # trust_remote_code reached every part
    return json.loads(next(line for line in output.splitlines() if line.startswith("SCORES"))[len("SCORES") :])


# ------------------------------------------------------------------------------------ images: the eval transform


@pytest.mark.parametrize("size", [32, 48, 384, 448])
def test_saved_processor_output_equals_the_eval_transform(size, tmp_path):
    # transformers' ConvNextImageProcessor ignores crop_pct from 384 px up: at 448 px it was off by 1.16 on average
    spec = _timm_spec(size)
    image_processor_for(spec).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, TransferImageProcessor)
    transform = build_image_transforms(spec["data_config"], is_training=False)
    rng = np.random.default_rng(0)
    for source in (24, 41, size + 77):
        image = fx.random_image(rng, source)
        ours = processor(image, return_tensors="pt")["pixel_values"][0]
        expected = transform(image)
        assert ours.shape == expected.shape == (3, size, size)
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_non_square_and_squash_configs_follow_the_eval_transform(tmp_path):
    for extra in (
        {"input_size": [3, 32, 48]},
        {"crop_mode": "squash"},
        {"interpolation": "bilinear", "crop_pct": 1.0},
    ):
        spec = _timm_spec(32, **extra)
        processor = image_processor_for(spec)
        image = PIL.Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8))
        expected = build_image_transforms(spec["data_config"], is_training=False)(image)
        torch.testing.assert_close(processor(image)["pixel_values"][0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_saved_processor_takes_any_pil_mode_as_the_training_transform_does(mode, tmp_path):
    spec = _timm_spec(32)
    image_processor_for(spec).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    rgb = fx.random_image(np.random.default_rng(1), 28)
    image = rgb.convert(mode) if mode != "I;16" else PIL.Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    transform = build_image_transforms(spec["data_config"], is_training=False)
    torch.testing.assert_close(pixels[0], transform(image), rtol=0, atol=0)


def test_numpy_and_tensor_images_are_accepted():
    processor = image_processor_for(_timm_spec(32))
    image = fx.random_image(np.random.default_rng(3), 40)
    expected = processor(image)["pixel_values"]
    torch.testing.assert_close(processor(np.asarray(image))["pixel_values"], expected)
    batch = processor([image, image])["pixel_values"]
    assert batch.shape == (2, 3, 32, 32)


# ------------------------------------------------------------------------------------ image fusion: pipeline()


def _image_fusion(num_labels: int = 3, num_backbones: int = 2):
    """ResNet at 48 px (bilinear, crop 0.9, ImageNet stats) + ViT at 64 px (bicubic, crop 1.0, 0.5 stats) (+ a
    second ResNet at 40 px, squash)."""
    names = ["timm:test_resnet", "timm:test_vit", "timm:test_resnet"][:num_backbones]
    specs = [{"input_size": [3, 48, 48], "interpolation": "bilinear", "crop_pct": 0.9}]
    specs[0].update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    specs.append({"input_size": [3, 64, 64], "interpolation": "bicubic", "crop_pct": 1.0})
    specs.append({"input_size": [3, 40, 40], "crop_mode": "squash", "mean": [0.3, 0.4, 0.5], "std": [0.2, 0.2, 0.2]})
    model = TransferForImageClassification.from_backbones(
        names,
        pretrained=False,
        num_labels=num_labels,
        id2label={i: f"class_{i}" for i in range(num_labels)},
        fusion="concat",
    )
    for spec, data_config in zip(model.config.backbones, specs):
        spec["data_config"].update(data_config)
        spec["input_suffix"] = "" if spec is model.config.backbones[0] else f"_{model.config.backbones.index(spec)}"
    return model.eval()


def _expected_scores(model, image) -> dict[str, float]:
    inputs = {}
    for spec in model.config.backbones:
        transform = build_image_transforms(spec["data_config"], is_training=False)
        inputs[f"pixel_values{spec['input_suffix']}"] = transform(image)[None]
    with torch.no_grad():
        probabilities = model(**inputs).logits.softmax(-1)[0]
    return {model.config.id2label[i]: float(p) for i, p in enumerate(probabilities)}


@pytest.mark.parametrize("num_backbones", [2, 3])
def test_image_fusion_with_several_preprocessings_serves_through_pipeline(num_backbones, tmp_path):
    model = _image_fusion(num_backbones=num_backbones)
    names = ["pixel_values", "pixel_values_1", "pixel_values_2"][:num_backbones]
    assert [f"pixel_values{spec['input_suffix']}" for spec in model.config.backbones] == names
    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)

    processor = AutoImageProcessor.from_pretrained(tmp_path / "saved")
    assert processor.model_input_names == names
    image = fx.random_image(np.random.default_rng(5), 57)
    outputs = processor(image)
    assert [tuple(outputs[name].shape[-2:]) for name in names] == [(48, 48), (64, 64), (40, 40)][:num_backbones]

    expected = _expected_scores(model, image)
    predictions = pipeline("image-classification", model=str(tmp_path / "saved"))(image, top_k=3)
    assert {p["label"]: p["score"] for p in predictions} == pytest.approx(expected, abs=1e-5)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "saved"), TransferProcessor)


def test_pipeline_of_a_saved_model_never_prompts_for_remote_code(tmp_path, monkeypatch):
    # pipeline() also looks for a video processor, which transformers derives from the image processor's auto_map;
    # without a local answer it prompts (and waits 15 s in a terminal). Under pytest stdin is closed, so the prompt
    # would fail silently: catch the call itself.
    import builtins

    prompts = []
    monkeypatch.setattr(builtins, "input", lambda *args: prompts.append(args) or "n")
    model = _image_fusion(num_backbones=1)
    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)
    pipeline("image-classification", model=str(tmp_path / "saved"))(fx.random_image(np.random.default_rng(7), 40))
    assert prompts == []


def test_image_fusion_pipeline_as_remote_code_where_hf_transfer_is_absent(tmp_path):
    model = _image_fusion()
    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)
    image = fx.random_image(np.random.default_rng(6), 50)
    image.save(tmp_path / "image.png")
    expected = _expected_scores(model, image)
    output = _run_fresh(
        f"""
        import json
        from PIL import Image
        from transformers import AutoImageProcessor, AutoProcessor, pipeline
        processor = AutoImageProcessor.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        assert type(AutoProcessor.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)).__name__ == (
            "TransferProcessor"
        )
        classify = pipeline("image-classification", model={str(tmp_path / "saved")!r}, trust_remote_code=True)
        scores = {{p["label"]: p["score"] for p in classify(Image.open({str(tmp_path / "image.png")!r}), top_k=3)}}
        print("SCORES", json.dumps(scores))
        print("OK")
        """,
        hf_transfer_absent=True,
    )
    assert _scores(output) == pytest.approx(expected, abs=1e-5)


# ------------------------------------------------------------------------------------ text fusion: two tokenizers


def _save_word_level_bert(path) -> str:
    """A tiny BERT whose tokenizer (word-level over fixtures.WORDS) differs from modeling_utils' WordPiece one."""
    return fx.save_word_level_bert(path, num_hidden_layers=1, seed=1)


def _text_fusion(tmp_path):
    return TransferForSequenceClassification.from_backbones(
        [save_tiny_bert(tmp_path / "bert_a"), _save_word_level_bert(tmp_path / "bert_b")],
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        fusion="weighted_sum",
        fusion_dim=16,
    ).eval()


def test_text_fusion_with_two_tokenizers_serves_through_pipeline_after_the_backbones_are_gone(tmp_path):
    model = _text_fusion(tmp_path)
    assert [spec["input_suffix"] for spec in model.config.backbones] == ["", "_1"]
    text = "the cat sat on the mat"
    first, second = (AutoTokenizer.from_pretrained(tmp_path / name) for name in ("bert_a", "bert_b"))
    assert first(text)["input_ids"] != second(text)["input_ids"]
    inputs = {**first(text, return_tensors="pt")}
    inputs.update({f"{k}_1": v for k, v in second(text, return_tensors="pt").items()})
    with torch.no_grad():
        expected = model(**inputs).logits.softmax(-1)[0]

    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)
    shutil.rmtree(tmp_path / "bert_a")  # the training-time backbones are gone: the saved folder must suffice
    shutil.rmtree(tmp_path / "bert_b")

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert isinstance(tokenizer, TransferTokenizer)
    assert set(tokenizer(text)) >= {"input_ids", "attention_mask", "input_ids_1", "attention_mask_1"}
    predictions = pipeline("text-classification", model=str(tmp_path / "saved"))(text, top_k=2)
    scores = {p["label"]: p["score"] for p in predictions}
    assert scores == pytest.approx({"negative": float(expected[0]), "positive": float(expected[1])}, abs=1e-5)

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    processors = load_processors(reloaded.config)  # what a recipe reusing the saved model tokenizes with
    assert [p(text)["input_ids"] for p in processors] == [first(text)["input_ids"], second(text)["input_ids"]]

    output = _run_fresh(
        f"""
        import json
        from transformers import pipeline
        classify = pipeline("text-classification", model={str(tmp_path / "saved")!r}, trust_remote_code=True)
        print("SCORES", json.dumps({{p["label"]: p["score"] for p in classify({text!r}, top_k=2)}}))
        print("OK")
        """,
        hf_transfer_absent=True,
    )
    assert _scores(output) == pytest.approx(scores, abs=1e-5)


# ------------------------------------------------------------------------------------ image + text: one call


def test_image_text_fusion_predicts_a_new_pair_with_one_processor_call(tmp_path):
    model = TransferForSequenceClassification.from_backbones(
        [save_tiny_bert(tmp_path / "bert"), save_tiny_vit(tmp_path / "vit")],
        num_labels=2,
        id2label={0: "no", 1: "yes"},
        fusion="gated",
        fusion_dim=16,
    ).eval()
    image, caption = fx.random_image(np.random.default_rng(7), 45), "w1 w2 w3"
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "bert")
    transform = build_image_transforms(model.config.backbones[1]["data_config"], is_training=False)
    with torch.no_grad():
        expected = model(**tokenizer(caption, return_tensors="pt"), pixel_values=transform(image)[None]).logits

    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)
    shutil.rmtree(tmp_path / "bert")  # load_processors used to read the tokenizer from here
    shutil.rmtree(tmp_path / "vit")
    image.save(tmp_path / "image.png")

    # the README's call: one processor, one model call
    processor = AutoProcessor.from_pretrained(tmp_path / "saved")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        logits = reloaded(**processor(images=image, text=caption)).logits
    torch.testing.assert_close(logits, expected)
    with pytest.raises(ValueError, match="reads images and text; pass text"):
        processor(images=image)
    assert len(load_processors(reloaded.config)) == 2  # reusing the saved model needs nothing outside it

    output = _run_fresh(
        f"""
        import torch
        from PIL import Image
        from transformers import AutoModelForSequenceClassification, AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)
        with torch.no_grad():
            logits = model(**processor(images=Image.open({str(tmp_path / "image.png")!r}), text={caption!r})).logits
        print("LOGITS", logits.tolist())
        print("OK")
        """,
        hf_transfer_absent=True,
    )
    assert "Do you wish to run the custom code" not in output  # trust_remote_code reached every part
    logits = json.loads(next(line for line in output.splitlines() if line.startswith("LOGITS"))[len("LOGITS") :])
    torch.testing.assert_close(torch.tensor(logits), expected, atol=1e-5, rtol=0)


def test_build_processor_for_a_single_text_backbone_is_its_own_tokenizer(tmp_path):
    model = TransferForSequenceClassification.from_backbones(save_tiny_bert(tmp_path / "bert"), num_labels=2)
    processor = build_processor(model.config)
    assert processor.image_processor is None and type(processor.tokenizer).__name__.startswith("Bert")
    processor.save_pretrained(tmp_path / "saved")
    assert type(AutoTokenizer.from_pretrained(tmp_path / "saved")).__name__.startswith("Bert")  # pipeline()'s


def test_image_model_loads_with_auto_model_and_the_processor_from_one_folder(tmp_path):
    model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "saved").eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "saved")
    assert reloaded(**processor(fx.random_image(np.random.default_rng(0), 30))).logits.shape == (1, 2)


def test_pushed_text_fusion_serves_from_the_hub_where_hf_transfer_is_absent(hub_server, tmp_path):
    import uuid

    from hf_transfer.hub import publish_model

    model = _text_fusion(tmp_path)
    text = "a good film"
    expected = {}
    tokenizers = [AutoTokenizer.from_pretrained(tmp_path / name) for name in ("bert_a", "bert_b")]
    inputs = {**tokenizers[0](text, return_tensors="pt")}
    inputs.update({f"{k}_1": v for k, v in tokenizers[1](text, return_tensors="pt").items()})
    with torch.no_grad():
        probabilities = model(**inputs).logits.softmax(-1)[0]
    expected = {"negative": float(probabilities[0]), "positive": float(probabilities[1])}
    repo_id = f"test-user/text-fusion-{uuid.uuid4().hex[:8]}"
    commit = publish_model(model, tmp_path / "run", repo_id=repo_id, token=hub_server.token)
    shutil.rmtree(tmp_path / "bert_a")
    shutil.rmtree(tmp_path / "bert_b")

    files = set(hub_server.repo(repo_id).files_at(commit.oid))
    assert {"processor_config.json", "tokenizer_config.json", "processing_transfer.py"} <= files
    assert {"tokenizer/tokenizer_config.json", "tokenizer_1/tokenizer_config.json"} <= files
    output = _run_fresh(
        f"""
        import json
        from transformers import pipeline
        classify = pipeline("text-classification", model={repo_id!r}, trust_remote_code=True)
        print("SCORES", json.dumps({{p["label"]: p["score"] for p in classify({text!r}, top_k=2)}}))
        print("OK")
        """,
        hf_transfer_absent=True,
    )
    assert _scores(output) == pytest.approx(expected, abs=1e-5)


def test_a_reused_text_backbone_reads_its_tokenizer_from_the_saved_model_it_came_from(tmp_path):
    model = _text_fusion(tmp_path)
    model.save_pretrained(tmp_path / "saved")
    save_processors(None, tmp_path / "saved", model.config)
    expected = AutoTokenizer.from_pretrained(tmp_path / "bert_b")("the cat")["input_ids"]
    shutil.rmtree(tmp_path / "bert_b")
    reused = TransferForSequenceClassification.from_backbones(str(tmp_path / "saved"), num_labels=2)
    reused.config._name_or_path = ""  # a new model built on the reused backbones: nothing saved of its own yet
    assert reused.config.backbones[1]["processor_source"] == {"path": str(tmp_path / "saved"), "input_suffix": "_1"}
    tokenizers = load_processors(reused.config)
    assert tokenizers[1]("the cat")["input_ids"] == expected


def test_auto_processor_of_a_folder_saved_before_the_one_processor_gives_its_image_processor(tmp_path):
    from transformers import ConvNextImageProcessor

    model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    model.save_pretrained(tmp_path)
    ConvNextImageProcessor(size={"shortest_edge": 160}, crop_pct=0.95).save_pretrained(tmp_path)  # the old layout
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), ConvNextImageProcessor)
