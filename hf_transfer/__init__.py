# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""hf_transfer: transfer learning with timm and transformers backbones behind the Auto classes.

`import hf_transfer` registers `TransferConfig` with `AutoConfig` and the models with `AutoModel`,
`AutoModelForImageClassification` and `AutoModelForSequenceClassification`.
"""

from importlib import metadata as _metadata


def _check_import_name_clash() -> None:
    """PyPI's unrelated `hf-transfer` (a Rust download accelerator) installs the same import name."""
    try:
        other = _metadata.distribution("hf-transfer")
    except _metadata.PackageNotFoundError:
        return
    raise ImportError(
        f"The unrelated PyPI package `hf-transfer` {other.version} (a Rust download accelerator that "
        "huggingface_hub >= 1.0 no longer uses) is installed and shares the import name `hf_transfer` with this "
        "project (distribution `hf-transfer-learning`); the two overwrite each other's files. Fix: "
        "`pip uninstall -y hf-transfer hf-transfer-learning && pip install hf-transfer-learning`."
    )


_check_import_name_clash()

from transformers import (  # noqa: E402
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
    AutoVideoProcessor,
)

from .configuration_multitask import MultiTaskConfig  # noqa: E402
from .configuration_transfer import BackboneEntry, TransferConfig  # noqa: E402
from .modeling_multitask import TransferForMultiTask  # noqa: E402
from .modeling_transfer import (  # noqa: E402
    BackboneSpec,
    TransferForClassification,
    TransferForImageClassification,
    TransferForSequenceClassification,
    TransferModel,
    TransferPreTrainedModel,
)
from .processing import NoVideoProcessor  # noqa: E402
from .processing_transfer import TransferImageProcessor, TransferProcessor, TransferTokenizer  # noqa: E402

__version__ = "0.1.0"

AutoConfig.register(TransferConfig.model_type, TransferConfig, exist_ok=True)
AutoModel.register(TransferConfig, TransferModel, exist_ok=True)
AutoModelForImageClassification.register(TransferConfig, TransferForImageClassification, exist_ok=True)
AutoModelForSequenceClassification.register(TransferConfig, TransferForSequenceClassification, exist_ok=True)
# The processors saved with every model (hf_transfer.processing_transfer): found here without trust_remote_code.
AutoImageProcessor.register(
    TransferConfig,
    image_processor_classes={"pil": TransferImageProcessor, "torchvision": TransferImageProcessor},
    exist_ok=True,
)
AutoTokenizer.register(TransferConfig, TransferTokenizer, exist_ok=True)
AutoProcessor.register(TransferConfig, TransferProcessor, exist_ok=True)
AutoVideoProcessor.register(TransferConfig, NoVideoProcessor, exist_ok=True)  # no remote-code prompt in pipeline()
# Multi-task models (issue 13): their own model_type, so that AutoModel builds the model with all its heads.
AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, TransferForMultiTask, exist_ok=True)

__all__ = [
    "BackboneEntry",
    "BackboneSpec",
    "MultiTaskConfig",
    "TransferConfig",
    "TransferModel",
    "TransferPreTrainedModel",
    "TransferForClassification",
    "TransferForImageClassification",
    "TransferForSequenceClassification",
    "TransferImageProcessor",
    "TransferProcessor",
    "TransferTokenizer",
    "TransferForMultiTask",
]
