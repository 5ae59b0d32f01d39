"""Imports transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) from the sdist of the installed
transformers, which scripts/setup.sh extracts into `.cache/transformers-tests/tests` (git-ignored).

The sdist ships only the top-level `tests/*.py` files, not the sub-packages those files import
(`tests/exporters`, `tests/generation`, `tests/utils`), so this module registers the extracted folder as the package
`transformers_tests` and gives it those three modules: `ExportTesterMixin` and `GenerationTesterMixin` as empty
mixins (hf_transfer models neither export with `torch.export` tests nor generate), and `config_common_kwargs`, the
`PreTrainedConfig` arguments `ConfigTester` sets to non-default values, written here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import transformers

SUITE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "transformers-tests" / "tests"
PACKAGE = "transformers_tests"

# Values that differ from `PreTrainedConfig`'s defaults (ConfigTester checks each one survives construction).
CONFIG_COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "tie_word_embeddings": False,
    "is_decoder": True,
    "cross_attention_hidden_size": 128,
    "add_cross_attention": True,
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "finetuning_task": "translation",
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "tokenizer_class": "BertTokenizerFast",
    "prefix": "prefix",
    "bos_token_id": 6,
    "pad_token_id": 7,
    "eos_token_id": 8,
    "sep_token_id": 9,
    "decoder_start_token_id": 10,
    "task_specific_params": {"translation": "some_params"},
    "problem_type": "regression",
}


def missing_reason() -> str | None:
    """Why the suite cannot be imported (None when it can)."""
    if not (SUITE_DIR / "test_modeling_common.py").is_file():
        return (
            f"transformers' common tests are not in {SUITE_DIR}: run scripts/setup.sh (it extracts them from the "
            f"transformers {transformers.__version__} sdist)"
        )
    if importlib.util.find_spec("parameterized") is None:
        return "transformers' common tests need `parameterized` (pip install -e '.[dev]')"
    return None


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def load() -> types.ModuleType:
    """Registers the `transformers_tests` package and returns its `test_modeling_common` module."""
    if f"{PACKAGE}.test_modeling_common" in sys.modules:
        return sys.modules[f"{PACKAGE}.test_modeling_common"]
    # test_configuration_common runs `direct_transformers_import(tests/)`, which executes tests/__init__.py (empty in
    # the transformers repository, absent from the sdist) and then returns the installed transformers.
    (SUITE_DIR / "__init__.py").touch()
    package = _module(PACKAGE, __path__=[str(SUITE_DIR)])
    package.__file__ = str(SUITE_DIR / "__init__.py")

    class ExportTesterMixin:
        """Stand-in: the sdist lacks tests/exporters (torch.export tests do not run here)."""

    class GenerationTesterMixin:
        """Stand-in: the sdist lacks tests/generation (hf_transfer models do not generate)."""

    for sub, attributes in {
        "exporters": {"test_export": {"ExportTesterMixin": ExportTesterMixin}},
        "generation": {"test_utils": {"GenerationTesterMixin": GenerationTesterMixin}},
        "utils": {"test_configuration_utils": {"config_common_kwargs": CONFIG_COMMON_KWARGS}},
    }.items():
        _module(f"{PACKAGE}.{sub}", __path__=[])
        for leaf, values in attributes.items():
            _module(f"{PACKAGE}.{sub}.{leaf}", **values)
    return importlib.import_module(f"{PACKAGE}.test_modeling_common")


def load_config_tester() -> type:
    load()
    return importlib.import_module(f"{PACKAGE}.test_configuration_common").ConfigTester
