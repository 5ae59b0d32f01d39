"""benchmarks/transfer_quality.py: its recipes are valid recipes/finetune.py flags (the full run takes hours)."""

from pathlib import Path

import fixtures

finetune = fixtures.load_recipe_script()
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer_quality.py"


def load_benchmark():
    return fixtures.load_script(SCRIPT, "transfer_quality")


def test_benchmark_recipes_parse_and_overrides_replace_the_recipe_value(tmp_path):
    benchmark = load_benchmark()
    image = benchmark.set_flag(benchmark.fashion_mnist_flags("lite0.pth"), "num_train_epochs", 1)
    model_args, _, training_args = finetune.parse_args(
        image + ["--dataset_name", "x", "--output_dir", str(tmp_path), "--max_train_samples", "10"]
    )
    assert model_args.freeze == "none" and model_args.image_size == 64 and model_args.channels_last
    assert training_args.num_train_epochs == 1 and training_args.label_smoothing_factor == 0.1
    assert image.count("--num_train_epochs") == 1
    model_args, data_args, training_args = finetune.parse_args(
        benchmark.rotten_tomatoes_flags("minilm") + ["--dataset_name", "x", "--output_dir", str(tmp_path)]
    )
    assert model_args.pooling == "mean" and data_args.max_seq_length == 64 and training_args.learning_rate == 5e-5
