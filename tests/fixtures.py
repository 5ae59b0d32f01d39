"""Tiny local datasets with exactly the Hub datasets' schemas (uoft-cs/cifar10, uoft-cs/cifar100, nyu-mll/glue), built in code.

Real CIFAR and GLUE cannot be downloaded here, so tests write small stand-ins in the layouts
:func:`hf_transfer.data.load_raw_datasets` reads as ``--dataset_name <dir>``: parquet files named as the Hub stores
them (``<dataset>/<config>/{split}-00000-of-00001.parquet``) or ``save_to_disk`` DatasetDicts, plus image folders,
csv/json files, tiny tokenizers and backbone specs as the model config's ``backbones`` carries them.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import PIL.Image
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_FINE_LABELS = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle "
    "caterpillar cattle chair chimpanzee clock cloud cockroach couch cra crocodile cup dinosaur dolphin elephant "
    "flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man "
    "maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
    "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail "
    "snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout "
    "tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR100_COARSE_LABELS = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
).split()
assert len(CIFAR100_FINE_LABELS) == 100 and len(CIFAR100_COARSE_LABELS) == 20

GLUE_COLUMNS = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
    "ax": ("premise", "hypothesis"),
}
GLUE_LABELS = {
    "cola": ["unacceptable", "acceptable"],
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"],
    "stsb": None,  # float32 similarity 0-5
    "mnli": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"],
    "ax": ["entailment", "neutral", "contradiction"],
}
GLUE_SPLITS = {
    "mnli": ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"),
    "ax": ("test",),
}
WORDS = "the a cat dog sat on mat good bad movie film great awful plot is was very not quite fun boring".split()


def random_image(rng: np.random.Generator, size: int = 32, mode: str = "RGB") -> PIL.Image.Image:
    """A random image of the given mode (RGB, L, RGBA, P...)."""
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).convert(mode)


def png_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> list[int]:
    return rng.permutation(np.arange(n) % num_classes).tolist()


def cifar10(n_train: int = 40, n_test: int = 20, seed: int = 0) -> DatasetDict:
    """uoft-cs/cifar10's schema: ``img`` (Image, 32×32 RGB), ``label`` (ClassLabel, 10 names); train/test."""
    rng = np.random.default_rng(seed)
    features = Features({"img": Image(), "label": ClassLabel(names=CIFAR10_LABELS)})
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {"img": [random_image(rng) for _ in range(n)], "label": _balanced_labels(n, 10, rng)},
                features=features,
            )
            for split, n in (("train", n_train), ("test", n_test))
        }
    )


def cifar100(n_train: int = 200, n_test: int = 40, seed: int = 0) -> DatasetDict:
    """uoft-cs/cifar100's schema: ``img``, ``fine_label`` (100 names), ``coarse_label`` (20 names)."""
    rng = np.random.default_rng(seed)
    features = Features(
        {
            "img": Image(),
            "fine_label": ClassLabel(names=CIFAR100_FINE_LABELS),
            "coarse_label": ClassLabel(names=CIFAR100_COARSE_LABELS),
        }
    )
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = _balanced_labels(n, 100, rng)
        out[split] = Dataset.from_dict(
            {"img": [random_image(rng) for _ in range(n)], "fine_label": fine, "coarse_label": [f % 20 for f in fine]},
            features=features,
        )
    return DatasetDict(out)


def sentence(rng: np.random.Generator, low: int = 3, high: int = 12) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(low, high))))


def glue(task: str, n: int = 24, seed: int = 0) -> DatasetDict:
    """nyu-mll/glue's schema for one task: its text columns, ``label`` (ClassLabel, float32 for stsb), ``idx``
    (int32); test labels are -1; MNLI has matched/mismatched validation and test splits; ax is test-only."""
    rng = np.random.default_rng(seed)
    names = GLUE_LABELS[task]
    label_feature = Value("float32") if names is None else ClassLabel(names=names)
    features = Features(
        {**{c: Value("string") for c in GLUE_COLUMNS[task]}, "label": label_feature, "idx": Value("int32")}
    )
    out = {}
    for split in GLUE_SPLITS.get(task, ("train", "validation", "test")):
        rows = {c: [sentence(rng) for _ in range(n)] for c in GLUE_COLUMNS[task]}
        if split.startswith("test"):
            rows["label"] = [-1.0 if names is None else -1] * n
        elif names is None:
            rows["label"] = np.round(rng.uniform(0, 5, n), 2).tolist()
        else:
            rows["label"] = _balanced_labels(n, len(names), rng)
        rows["idx"] = list(range(n))
        out[split] = Dataset.from_dict(rows, features=features)
    return DatasetDict(out)


def write_hub_layout(dataset_dict: DatasetDict, folder: Path, fmt: str = "parquet") -> Path:
    """Writes splits as the Hub stores them (``{split}-00000-of-00001.parquet``) or with ``save_to_disk``."""
    folder = Path(folder)
    if fmt == "disk":
        dataset_dict.save_to_disk(str(folder))
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for split, dataset in dataset_dict.items():
        dataset.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return folder


def make_cifar10(root: Path, fmt: str = "parquet", **kwargs) -> Path:
    """``root/cifar10/plain_text/...`` (the Hub's config folder); returns ``root/cifar10``."""
    write_hub_layout(cifar10(**kwargs), Path(root) / "cifar10" / "plain_text", fmt)
    return Path(root) / "cifar10"


def make_cifar100(root: Path, fmt: str = "parquet", **kwargs) -> Path:
    """``root/cifar100/cifar100/...``; returns ``root/cifar100``."""
    write_hub_layout(cifar100(**kwargs), Path(root) / "cifar100" / "cifar100", fmt)
    return Path(root) / "cifar100"


def make_glue(
    root: Path, tasks=("sst2", "mrpc", "stsb", "mnli", "cola", "ax"), fmt: str = "parquet", n: int = 24
) -> Path:
    """``root/glue/<task>/...`` for each task; returns ``root/glue``."""
    for task in tasks:
        write_hub_layout(glue(task, n=n), Path(root) / "glue" / task, fmt)
    return Path(root) / "glue"


def make_image_folders(
    root: Path,
    classes=("cat", "dog", "frog"),
    per_class: int = 6,
    modes=("RGB", "L", "RGBA", "P"),
    size: int = 32,
    seed: int = 0,
) -> tuple[Path, Path]:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` with mixed image modes; returns both dirs."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", max(2, per_class // 2))):
        for name in classes:
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                random_image(rng, size, modes[i % len(modes)]).save(folder / f"{i}.png")
    return Path(root) / "train", Path(root) / "val"


def make_text_files(
    root: Path, fmt: str = "csv", n: int = 30, seed: int = 0, labels=("neg", "pos", "neutral")
) -> dict:
    """``train``/``validation``/``test`` files with ``text`` and string ``label`` columns; returns split → path."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "validation", "test"):
        frame = pd.DataFrame(
            {"text": [sentence(rng) for _ in range(n)], "label": [labels[i % len(labels)] for i in range(n)]}
        )
        path = root / f"{split}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
        else:
            frame.to_parquet(path)
        paths[split] = str(path)
    return paths


def image_text_dataset(n: int = 16, seed: int = 0) -> DatasetDict:
    """A fusion task: ``image`` + ``caption`` + ``label`` (ClassLabel) in one dataset; train/validation."""
    rng = np.random.default_rng(seed)
    features = Features({"image": Image(), "caption": Value("string"), "label": ClassLabel(names=["no", "yes"])})
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {
                    "image": [random_image(rng) for _ in range(n)],
                    "caption": [sentence(rng) for _ in range(n)],
                    "label": _balanced_labels(n, 2, rng),
                },
                features=features,
            )
            for split in ("train", "validation")
        }
    )


def tiny_tokenizer(token_type_ids: bool = True, pad_token_id: int = 0, model_max_length: int = 512):
    """A word-level BERT-style tokenizer over :data:`WORDS` ([CLS] a [SEP] b [SEP]); no files, no network."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    specials.insert(pad_token_id, "[PAD]")
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_type_ids else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        model_input_names=names,
    )


def image_backbone(size: int = 32, suffix: str = "", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), **extra) -> dict:
    """An image backbone entry as ``config.backbones`` carries it."""
    data_config = {
        "input_size": [3, size, size],
        "mean": list(mean),
        "std": list(std),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
    }
    return {"modality": "image", "input_suffix": suffix, "data_config": data_config, **extra}


def text_backbone(suffix: str = "", **extra) -> dict:
    """A text backbone entry as ``config.backbones`` carries it."""
    return {"modality": "text", "input_suffix": suffix, **extra}


RECIPE_SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "finetune.py"
RECIPE_COMMON_FLAGS = [
    "--report_to",
    "none",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "16",
]


def save_word_level_bert(
    path: Path, num_hidden_layers: int = 2, hidden_size: int = 32, intermediate_size: int = 37, seed: int = 0
) -> str:
    """A tiny random BERT with :func:`tiny_tokenizer`, saved like a Hub checkpoint (config, weights, tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer()
    config = BertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=intermediate_size,
        vocab_size=len(tokenizer),
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def kill_after(command: list, marker: Path, timeout: float = 300) -> None:
    """Starts `command` and SIGKILLs it once `marker` exists (a checkpoint folder): a run killed mid-training."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen([str(a) for a in command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


# `accelerate launch` with two processes; on a machine without GPUs the recipe runs them as CPU DDP over gloo.
ACCELERATE_TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
ACCELERATE_TWO_PROCESSES += "--num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port 0".split()


def load_script(path: Path, module_name: str):
    """Imports a script (a recipe or a benchmark) as the module `module_name`, so that tests call its functions
    in-process. The module is registered in `sys.modules` first: dataclasses resolve their annotations there."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_recipe_script(module_name: str = "finetune"):
    """Imports `recipes/finetune.py` as a module, so that tests call its `main(argv)` in-process."""
    return load_script(RECIPE_SCRIPT, module_name)
