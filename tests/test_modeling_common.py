"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) over hf_transfer models, as
transformers' tests/models/*/test_modeling_*.py run them: a single timm backbone, a single tiny BERT, and a fusion of
the two. The mixin comes from the transformers sdist that scripts/setup.sh extracts (see tests/transformers_suite.py);
only tests that do not apply to these models are skipped, each with its reason below.
"""

import copy
import unittest

import pytest
import torch
import transformers_suite
from transformers import BertConfig

from hf_transfer import (
    TransferConfig,
    TransferForImageClassification,
    TransferForSequenceClassification,
    TransferModel,
)
from hf_transfer.modeling_transfer import BackboneSpec, assign_input_suffixes, load_backbones

if transformers_suite.missing_reason():
    pytest.skip(transformers_suite.missing_reason(), allow_module_level=True)

common = transformers_suite.load()
ConfigTester = transformers_suite.load_config_tester()
ModelTesterMixin, floats_tensor, ids_tensor = common.ModelTesterMixin, common.floats_tensor, common.ids_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


def timm_spec(architecture: str = "test_resnet") -> dict:
    ((_, spec),) = load_backbones(BackboneSpec(f"timm:{architecture}", pretrained=False))
    return spec


def bert_spec(tester) -> dict:
    config = BertConfig(
        vocab_size=tester.vocab_size,
        hidden_size=tester.hidden_size,
        num_hidden_layers=tester.num_hidden_layers,
        num_attention_heads=tester.num_attention_heads,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    return {
        "source": "tiny-bert",
        "library": "transformers",
        "modality": "text",
        "config": config.to_dict(),
        "pooling": "cls",
        "feature_dim": tester.hidden_size,
        "freeze": None,
        "pretrained": False,
    }


class TransferModelTester:
    """Builds configs and inputs for one kind of hf_transfer model (`kinds`: the backbones' modalities)."""

    def __init__(
        self,
        parent,
        kinds=("image",),
        batch_size=2,
        image_size=32,
        num_channels=3,
        seq_length=7,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_labels=3,
        is_training=True,
    ):
        self.parent = parent
        self.kinds = kinds
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_labels = num_labels
        self.is_training = is_training
        self.encoder_seq_length = seq_length
        self.key_length = seq_length

    def get_config(self) -> TransferConfig:
        specs = [timm_spec() if kind == "image" else bert_spec(self) for kind in self.kinds]
        assign_input_suffixes(specs)
        return TransferConfig(backbones=specs, num_labels=self.num_labels, fusion_dim=16)

    def prepare_config_and_inputs(self):
        inputs = {}
        if "image" in self.kinds:
            inputs["pixel_values"] = floats_tensor(
                [self.batch_size, self.num_channels, self.image_size, self.image_size]
            )
        if "text" in self.kinds:
            inputs["input_ids"] = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
            inputs["attention_mask"] = torch.ones(self.batch_size, self.seq_length, dtype=torch.long)
        return self.get_config(), inputs

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()


class _TransferTest(ModelTesterMixin):
    kinds: tuple = ("image",)
    # hf_transfer models are classifiers/feature extractors on pooled features: no position embeddings, no pruning.
    test_resize_position_embeddings = False
    test_torch_exportable = False

    def setUp(self):
        self.model_tester = TransferModelTester(self, kinds=self.kinds)
        # A composite config (like VisionTextDualEncoder's): the backbones' configs hold hidden_size & co.
        self.config_tester = ConfigTester(
            self, config_class=TransferConfig, has_text_modality=False, common_properties=[]
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # transformers adds labels for the classifier classes of its own mappings; ours are registered at import.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels and model_class is not TransferModel:
            inputs_dict["labels"] = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
        return inputs_dict

    def check_training_gradient_checkpointing(self, gradient_checkpointing_kwargs=None):
        # As in test_training: the base model has no loss to train with.
        self.all_model_classes = self.all_model_classes[1:]
        super().check_training_gradient_checkpointing(gradient_checkpointing_kwargs)

    def test_training(self):
        # transformers skips base models (those in MODEL_MAPPING_NAMES): like them, TransferModel has no loss.
        self.all_model_classes = self.all_model_classes[1:]
        super().test_training()

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_forward_with_labels(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes[1:]:
            model = model_class(copy.deepcopy(config)).eval()
            labels = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
            loss, logits = model(**inputs, labels=labels, return_dict=False)
            self.assertEqual(logits.shape, (self.model_tester.batch_size, self.model_tester.num_labels))
            self.assertEqual(loss.dim(), 0)

    @unittest.skip(
        reason="hidden_states are one pooled feature tensor (batch, dim) per backbone then the fused one, not "
        "per-layer (batch, seq, hidden) states; tests/test_arguments.py tests them"
    )
    def test_hidden_states_output(self):
        pass

    @unittest.skip(reason="hidden_states are pooled features computed after the backbones' layers (see above)")
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(reason="hf_transfer models have no feed-forward chunking of their own")
    def test_feed_forward_chunking(self):
        pass


class _TimmInit:
    # transformers' test checks, module by module, that `_init_weights` alone re-initialises every tensor of a model
    # built on the meta device. timm initialises inside its constructors and has no per-module init function, so our
    # `initialize_weights` copies timm's own init from a freshly built timm model instead (tests/test_loading.py:
    # test_timm_tensors_missing_at_from_pretrained_get_timm_init_not_garbage tests the real from_pretrained path).
    @pytest.mark.xfail(strict=True, reason="timm tensors are initialised by initialize_weights, not _init_weights")
    def test_can_init_all_missing_weights(self):
        super().test_can_init_all_missing_weights()


class TimmTransferModelTest(_TimmInit, _TransferTest, unittest.TestCase):
    """A single timm backbone (`test_resnet`, random init)."""

    kinds = ("image",)
    all_model_classes = (TransferModel, TransferForImageClassification)
    has_attentions = False  # timm models return no attention maps
    test_resize_embeddings = False  # no token embeddings

    _timm_checkpointing = (
        "timm checkpoints with checkpoint_seq, not transformers' GradientCheckpointingLayer the test looks for; "
        "tests/test_arguments.py tests enable/disable, training and is_gradient_checkpointing on timm backbones"
    )

    @unittest.skip(reason=_timm_checkpointing)
    def test_gradient_checkpointing_enable_disable(self):
        pass

    @unittest.skip(reason=_timm_checkpointing)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason=_timm_checkpointing)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason=_timm_checkpointing)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skip(reason="an image model has no token embeddings (get_input_embeddings raises, as tested elsewhere)")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="an image model takes no inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="an image model takes no inputs_embeds")
    def test_inputs_embeds_matches_input_ids(self):
        pass


class BertTransferModelTest(_TransferTest, unittest.TestCase):
    """A single tiny BERT backbone."""

    kinds = ("text",)
    all_model_classes = (TransferModel, TransferForSequenceClassification)


class FusionTransferModelTest(_TimmInit, _TransferTest, unittest.TestCase):
    """A fusion of a timm image backbone and a tiny BERT text backbone."""

    kinds = ("image", "text")
    all_model_classes = (TransferModel, TransferForImageClassification)
    additional_model_inputs = ["input_ids"]  # the text backbone's input, besides the main pixel_values
    test_resize_embeddings = False  # the token embeddings of one backbone of several are reached through it

    @unittest.skip(reason="a fusion has no single token embedding matrix (get_input_embeddings raises)")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="a fusion has no single token embedding matrix to compute inputs_embeds with")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="a fusion has no single token embedding matrix to compute inputs_embeds with")
    def test_inputs_embeds_matches_input_ids(self):
        pass
