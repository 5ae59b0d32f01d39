"""The image processors saved with a model: what `pipeline()` and `AutoImageProcessor` users get."""

import fixtures as fx
import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoImageProcessor

from hf_transfer.data import build_image_transforms
from hf_transfer.processing import image_processor_for


def _timm_spec(size: int, **data_config) -> dict:
    spec = fx.image_backbone(size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), library="timm")
    spec["data_config"].update(data_config)
    return spec


@pytest.mark.parametrize("size", [32, 48])
def test_saved_processor_reproduces_the_eval_transform(size, tmp_path):
    spec = _timm_spec(size)
    image_processor_for(spec).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    transform = build_image_transforms(spec["data_config"], is_training=False)
    rng = np.random.default_rng(0)
    for source in (24, 40, 64):
        image = fx.random_image(rng, source)
        ours = processor(image, return_tensors="pt")["pixel_values"][0]
        expected = transform(image)
        assert ours.shape == expected.shape == (3, size, size)
        # torchvision's tensor resize vs PIL's: the same bicubic resize + centre crop up to resampling rounding
        assert (ours - expected).abs().mean() < 0.02, (ours - expected).abs().mean()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_saved_processor_takes_any_pil_mode_as_the_training_transform_does(mode, tmp_path):
    spec = _timm_spec(32)
    image_processor_for(spec).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    rgb = fx.random_image(np.random.default_rng(1), 28)
    image = rgb.convert(mode) if mode != "I;16" else PIL.Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    expected = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixels, expected)
    # and the training transform agrees on the colour conversion
    transform = build_image_transforms(spec["data_config"], is_training=False)
    assert transform(image).shape == (3, 32, 32)


def test_non_square_input_gets_a_fixed_size_processor_that_converts_to_rgb(tmp_path):
    spec = _timm_spec(32)
    spec["data_config"]["input_size"] = [3, 32, 48]
    processor = image_processor_for(spec)
    gray = PIL.Image.new("L", (50, 40), 128)
    assert processor(gray, return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 48)
