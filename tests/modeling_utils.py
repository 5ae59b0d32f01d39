"""Tiny backbones and data for model tests: timm `test_*` models and small transformers configs built in code."""

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertModel, BertTokenizerFast, TrainingArguments, ViTConfig, ViTModel

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]


def save_tiny_bert(path) -> str:
    """A 2-layer BERT (hidden 32) with a word-level tokenizer, saved like a Hub checkpoint."""
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=100
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(vocab_file)).save_pretrained(path)
    return str(path)


def save_tiny_vit(path) -> str:
    """A 2-layer ViT at 32 px (no image processor saved: the model falls back to ImageNet statistics)."""
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(path)
    return str(path)


class SeparableImages(Dataset):
    """Images whose class is written in their mean brightness per channel: separable by any backbone."""

    def __init__(self, n: int = 64, num_labels: int = 2, size: int = 32, keys=("pixel_values",), seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % num_labels
        base = torch.randn(n, 3, size, size, generator=generator) * 0.3
        self.images = base + (self.labels.float() * 2 - 1).view(-1, 1, 1, 1) * 1.5
        self.keys = keys

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {key: self.images[i] for key in self.keys}
        item["labels"] = self.labels[i]
        return item


class SeparableText(Dataset):
    """Token sequences whose class decides which half of the vocabulary they use."""

    def __init__(self, n: int = 64, length: int = 8, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        low = torch.randint(5, 50, (n, length), generator=generator)
        self.input_ids = torch.where(self.labels.view(-1, 1) == 1, low + 50, low)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        ids = self.input_ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[i]}


def tiny_training_args(output_dir, **overrides) -> TrainingArguments:
    kwargs = dict(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=16,
        learning_rate=5e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def clone_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
