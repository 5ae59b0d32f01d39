"""The checked-in accelerate configs (recipes/accelerate/*.yaml) read as `accelerate launch --config_file` reads them,
and their FSDP wrap policies name layer classes that the backbones they are meant for really have."""

from pathlib import Path

import fixtures
import pytest
import torch
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import FullyShardedDataParallelPlugin, prepare_multi_gpu_env

from hf_transfer import TransferForImageClassification

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
finetune = fixtures.load_recipe_script()

EXPECTED = {  # file: (distributed_type, machines, processes, what the launcher turns on)
    "1gpu.yaml": ("NO", 1, 1, None),
    "8gpu_ddp.yaml": ("MULTI_GPU", 1, 8, "multi_gpu"),
    "8gpu_fsdp_vit.yaml": ("FSDP", 1, 8, "use_fsdp"),
    "8gpu_fsdp_deberta.yaml": ("FSDP", 1, 8, "use_fsdp"),
    "2nodes.yaml": ("MULTI_GPU", 2, 16, "multi_gpu"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 1, 8, "use_deepspeed"),
}


def launch_args(name: str):
    """What `accelerate launch --config_file recipes/accelerate/NAME recipes/finetune.py` resolves."""
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), str(fixtures.RECIPE_SCRIPT)])
    args, _, _ = _validate_launch_command(args)
    return args


def test_every_config_is_listed():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_accelerates_loader_and_launcher(name):
    distributed_type, machines, processes, switch = EXPECTED[name]
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    assert (config.distributed_type, config.num_machines, config.num_processes) == (
        distributed_type,
        machines,
        processes,
    )
    assert config.mixed_precision == "bf16"
    args = launch_args(name)
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (processes, machines, "bf16")
    for flag in ("multi_gpu", "use_fsdp", "use_deepspeed"):
        assert bool(getattr(args, flag)) == (flag == switch), flag


def fsdp_plugin(name: str, monkeypatch) -> FullyShardedDataParallelPlugin:
    """The FSDP plugin a process launched with config `name` builds (from the launcher's environment)."""
    for key, value in prepare_multi_gpu_env(launch_args(name)).items():
        monkeypatch.setenv(key, value)
    return FullyShardedDataParallelPlugin()


def test_fsdp_vit_config_wraps_each_timm_vit_block(monkeypatch):
    plugin = fsdp_plugin("8gpu_fsdp_vit.yaml", monkeypatch)
    assert plugin.fsdp_version == 2 and "FULL_STATE_DICT" in str(plugin.state_dict_type)
    model = TransferForImageClassification.from_backbones(["timm:test_vit"], pretrained=False, num_labels=3)
    plugin.set_auto_wrap_policy(model)  # raises if no module of the named class exists
    from timm.models.vision_transformer import Block

    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {Block}


def test_fsdp_deberta_config_wraps_each_deberta_v2_layer(monkeypatch):
    from transformers import DebertaV2Config, DebertaV2Model
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Layer

    plugin = fsdp_plugin("8gpu_fsdp_deberta.yaml", monkeypatch)
    assert plugin.fsdp_version == 2
    tiny = DebertaV2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8, vocab_size=50
    )
    plugin.set_auto_wrap_policy(DebertaV2Model(tiny))
    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {DebertaV2Layer}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without GPUs")
@pytest.mark.parametrize("name", ["8gpu_fsdp_vit.yaml", "8gpu_fsdp_deberta.yaml"])
def test_fsdp_configs_are_refused_without_gpus(name, monkeypatch, tmp_path):
    for key, value in prepare_multi_gpu_env(launch_args(name)).items():
        monkeypatch.setenv(key, value)
    _, _, training_args = finetune.parse_args(
        ["--backbone", "timm:test_vit", "--dataset_name", "x", "--output_dir", str(tmp_path)]
    )
    with pytest.raises(RuntimeError, match="FSDP was asked for"):
        finetune.check_distributed(training_args)
