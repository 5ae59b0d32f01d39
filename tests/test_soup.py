"""Model soups (hf_transfer.soup): uniform mean, the greedy soup's guarantee, saving, architecture checks."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification

import hf_transfer  # noqa: F401  (registers the Auto classes)
from hf_transfer import TransferForImageClassification
from hf_transfer.soup import greedy_soup, save_soup, soup, uniform_soup
from hf_transfer.training import TransferTrainer
from tests.modeling_utils import SeparableImages, tiny_training_args


class Flipped(SeparableImages):
    def __getitem__(self, i):
        item = super().__getitem__(i)
        item["labels"] = 1 - item["labels"]
        return item


@pytest.fixture(scope="module")
def ingredients(tmp_path_factory):
    """Four fine-tunings of one pretrained model (different seeds and learning rates), one of them on wrong labels."""
    root = tmp_path_factory.mktemp("soup")
    paths = []
    for i, (lr, data) in enumerate(
        [(3e-3, SeparableImages), (1e-3, SeparableImages), (5e-3, Flipped), (2e-3, SeparableImages)]
    ):
        torch.manual_seed(0)  # the same "pretrained" start and head init
        model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
        args = tiny_training_args(
            root / f"run{i}", max_steps=3, per_device_train_batch_size=8, learning_rate=lr, seed=i
        )
        TransferTrainer(model=model, args=args, train_dataset=data(n=24, seed=i)).train()
        model.save_pretrained(root / f"ft{i}")
        paths.append(str(root / f"ft{i}"))
    return paths


def held_out_score(model) -> float:
    """Negative cross-entropy on held-out rows (a continuous score, so the comparison is strict)."""
    data = SeparableImages(n=32, seed=7)
    model.eval()
    with torch.no_grad():
        logits = model(pixel_values=data.images).logits
    return -F.cross_entropy(logits, data.labels).item()


def test_greedy_soup_never_scores_below_its_best_ingredient(ingredients, tmp_path):
    model, report = greedy_soup(ingredients, held_out_score)
    best = max(report.scores.values())
    assert report.soup_score >= best
    assert held_out_score(model) == pytest.approx(report.soup_score, abs=1e-6)
    assert report.used[0] == max(report.scores, key=report.scores.get)
    assert ingredients[2] not in report.used  # trained on flipped labels: it would lower the score

    save_soup(model, report, tmp_path / "soup")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "soup")
    assert held_out_score(reloaded) == pytest.approx(report.soup_score, abs=1e-6)
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "greedy soup" in card and all(p in card for p in ingredients)


def test_uniform_soup_is_the_mean_of_the_weights(ingredients):
    model, report = uniform_soup(ingredients[:2], held_out_score)
    first, second = (TransferForImageClassification.from_pretrained(p).state_dict() for p in ingredients[:2])
    for key, value in model.state_dict().items():
        expected = (first[key] + second[key]) / 2 if value.is_floating_point() else first[key]
        torch.testing.assert_close(value, expected, msg=key)
    assert report.used == ingredients[:2] and report.soup_score is not None


def test_ingredients_of_different_architectures_are_refused(ingredients, tmp_path):
    other = TransferForImageClassification.from_backbones("timm:test_vit", pretrained=False, num_labels=2)
    other.save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="one architecture.*backbones"):
        uniform_soup([ingredients[0], str(tmp_path / "vit")])
    three = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=3)
    three.save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="num_labels"):
        uniform_soup([ingredients[0], str(tmp_path / "three")])


def test_bad_arguments(ingredients):
    with pytest.raises(ValueError, match="at least 2"):
        uniform_soup(ingredients[:1])
    with pytest.raises(ValueError, match="greedy, uniform"):
        soup(ingredients, method="average")
    with pytest.raises(ValueError, match="held-out"):
        soup(ingredients, method="greedy")


@pytest.mark.slow
def test_recipe_soup_of_finetune_runs(tmp_path):
    from tests import fixtures

    fixtures.make_cifar10(tmp_path, n_train=32, n_test=16)
    finetune = fixtures.load_recipe_script()
    data = ["--dataset_name", str(tmp_path / "cifar10")]
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"ft{seed}"
        finetune.main(
            ["--backbone", "timm:test_resnet", "--random_init", *data, "--output_dir", str(out), "--do_train"]
            + ["--max_steps", "2", "--seed", "0", "--data_seed", str(seed)]
            + fixtures.RECIPE_COMMON_FLAGS
        )
        runs.append(str(out))
    recipe = fixtures.load_script(fixtures.RECIPE_SCRIPT.parent / "soup.py", "soup_recipe")
    result = recipe.main(
        ["--checkpoints", *runs, "--soup_method", "greedy", *data, "--output_dir", str(tmp_path / "soup")]
        + ["--per_device_eval_batch_size", "16"]
    )
    assert result["soup_score"] >= max(result["scores"].values())
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "soup")
    assert model.config.num_labels == 10
    assert (tmp_path / "soup" / "README.md").is_file() and (tmp_path / "soup" / "preprocessor_config.json").is_file()
