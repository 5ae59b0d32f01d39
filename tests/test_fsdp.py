"""FSDP: a model sharded with FSDP2's `fully_shard` saves as an ordinary hf_transfer model (CPU, gloo, 2 ranks)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SHARD_TRAIN_SAVE = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from hf_transfer import TransferForImageClassification

    out = sys.argv[1]
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=3, fusion="concat"
    )
    for backbone in model.transfer.backbones:  # shard each backbone, then the rest, as a wrap policy would
        fully_shard(backbone)
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(dist.get_rank())
    pixels = torch.randn(4, 3, 160, 160, generator=generator)
    loss = model(pixel_values=pixels, pixel_values_1=pixels, labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    optimizer.step()
    model.eval()
    probe = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(42))
    with torch.no_grad():
        logits = model(pixel_values=probe, pixel_values_1=probe).logits
    model.save_pretrained(out, is_main_process=dist.get_rank() == 0)  # every rank: the gather is a collective
    if dist.get_rank() == 0:
        torch.save({"probe": probe, "logits": logits}, out + "/expected.pt")
    dist.barrier()
    dist.destroy_process_group()
    """
)

RELOAD_AS_REMOTE_CODE = textwrap.dedent(
    """
    import sys
    import torch
    sys.modules["hf_transfer"] = None  # as if not installed
    from transformers import AutoModelForImageClassification
    out = sys.argv[1]
    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    expected = torch.load(out + "/expected.pt", weights_only=True)
    with torch.no_grad():
        logits = model(pixel_values=expected["probe"], pixel_values_1=expected["probe"]).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=1e-4, atol=1e-5)
    print("OK")
    """
)


def test_fsdp2_sharded_model_saves_our_code_and_the_full_trained_weights(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_TRAIN_SAVE)
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run([*launch, str(script), str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]

    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "modeling_transfer.py", "configuration_transfer.py"} <= files
    assert not [name for name in files if name.startswith("_fsdp")], files  # torch's FSDP code is not ours to ship
    auto_map = json.loads((out / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageClassification"] == "modeling_transfer.TransferForImageClassification"

    # The trained (not the initial) weights, every one of them, in a process where hf_transfer is absent.
    result = subprocess.run([sys.executable, "-c", RELOAD_AS_REMOTE_CODE, str(out)], capture_output=True, text=True)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-4000:]
