"""`recipes/finetune.py --push_to_hub`: the token never lands in a file, and a push that cannot happen fails first.

The recipe runs in-process (as in tests/test_finetune.py) on the local CIFAR-10 stand-in, against the loopback Hub.
"""

import json
import subprocess
import time
import uuid
from pathlib import Path

import fixtures
import pytest
from huggingface_hub import ModelCard, constants

from hf_transfer.hub import HubAuthError, find_secret_in_files

SCRIPT = fixtures.RECIPE_SCRIPT
COMMON = fixtures.RECIPE_COMMON_FLAGS
finetune = fixtures.load_recipe_script("finetune_for_publish_tests")


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> Path:
    return fixtures.make_cifar10(tmp_path_factory.mktemp("data"), n_train=24, n_test=8)


def _unique_repo(prefix: str) -> str:
    return f"test-user/{prefix}-{uuid.uuid4().hex[:8]}"


def _recipe_args(cifar10: Path, output_dir: Path, repo_id: str) -> list[str]:
    return [
        *("--backbone", "timm:test_resnet", "--random_init", "--dataset_name", cifar10),
        *("--output_dir", output_dir, "--do_train", "--do_eval", "--max_steps", "2"),
        *("--save_strategy", "steps", "--save_steps", "1"),  # checkpoints (optimizer state, training_args.bin) too
        *("--push_to_hub", "--hub_model_id", repo_id),
        *COMMON,
    ]


def _token_from(source: str, token: str, tmp_path: Path, monkeypatch) -> list[str]:
    """Leaves the token in exactly one place: the command line, `HF_TOKEN`, or the file `hf auth login` writes."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    token_file = tmp_path / "login" / "token"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    if source == "--hub_token":
        return ["--hub_token", token]
    if source == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        token_file.parent.mkdir()
        token_file.write_text(token)
    return []


@pytest.mark.parametrize("source", ["--hub_token", "HF_TOKEN", "login token file"])
def test_the_token_is_in_no_file_of_the_run_or_of_the_pushed_repo(source, cifar10, hub_server, tmp_path, monkeypatch):
    token = hub_server.token
    out, repo_id = tmp_path / "out", _unique_repo("token-scan")
    finetune.main(
        [str(a) for a in _recipe_args(cifar10, out, repo_id) + _token_from(source, token, tmp_path, monkeypatch)]
    )

    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "training_args.bin" in written and any(name.startswith("checkpoint-") for name in written)
    assert not find_secret_in_files(out, token)

    files = hub_server.repo(repo_id).head().files
    assert "model.safetensors" in files and "README.md" in files
    leaked = sorted(name for name, content in files.items() if token.encode() in content)
    assert not leaked, f"the token is in the pushed {leaked}"
    assert not [name for name in files if name.startswith("checkpoint-") or name.endswith(".bin")]

    card = ModelCard(files["README.md"].decode())
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == eval_results["eval_accuracy"]
    # A local dataset: named, not linked to a Hub dataset of the same name, its path not published.
    assert card.data.datasets is None and "cifar10 (local)" in card.text and str(cifar10) not in card.content


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if the recipe gets as far as loading data (let alone training)."""

    def loaded(*args, **kwargs):
        raise AssertionError("the recipe loaded the data before checking the push target")

    monkeypatch.setattr(finetune, "load_raw_datasets", loaded)


@pytest.mark.parametrize(
    ("flags", "error", "match"),
    [
        (["--hub_model_id", "bad id!!"], ValueError, r"Invalid Hub repo id 'bad id!!'"),
        (["--hub_token", "hf_wrong_token_987"], HubAuthError, r"rejected the token passed explicitly.*401"),
        (["--hub_model_id", "someone-else/model"], HubAuthError, r"'test-user' cannot push to someone-else/model"),
    ],
)
def test_a_push_that_cannot_happen_fails_before_training(
    flags, error, match, cifar10, hub_server, tmp_path, no_training
):
    out = tmp_path / "never"
    argv = _recipe_args(cifar10, out, _unique_repo("fail-fast")) + flags  # the later --hub_model_id wins
    start = time.perf_counter()
    with pytest.raises(error, match=match) as info:
        finetune.main([str(a) for a in argv])
    assert time.perf_counter() - start < 10
    assert "hf_wrong_token_987" not in str(info.value)
    assert not (out / "trainer_state.json").exists() and not list(out.glob("checkpoint-*"))


def test_a_bad_token_in_hf_token_fails_before_training(cifar10, hub_server, tmp_path, monkeypatch, no_training):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_env_token_654")
    with pytest.raises(HubAuthError, match="rejected the token in HF_TOKEN") as info:
        finetune.main([str(a) for a in _recipe_args(cifar10, tmp_path / "never", _unique_repo("fail-fast"))])
    assert "hf_wrong_env_token_654" not in str(info.value)


@pytest.mark.slow
def test_a_multi_process_run_publishes_once_from_the_main_process(cifar10, hub_server, tmp_path):
    """`publish` runs on the main process only: its eval predictions must not wait for the other rank."""
    launcher = fixtures.ACCELERATE_TWO_PROCESSES
    repo_id = _unique_repo("ddp")
    args = _recipe_args(cifar10, tmp_path / "out", repo_id) + ["--per_device_eval_batch_size", "3"]
    result = subprocess.run(
        launcher + [str(SCRIPT)] + [str(a) for a in args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    repo = hub_server.repo(repo_id)
    assert [c.title for c in repo.commits][0] == "initial commit" and len(repo.commits) == 2  # one push, not two
    files = repo.head().files
    assert "confusion_matrix.png" in files and "No confusion matrix" not in result.stdout + result.stderr
    readme = files["README.md"].decode()
    assert "| world_size | 2 |" in readme and "| total_train_batch_size | 16 |" in readme


def test_timm_export_from_the_recipe_is_pushed_to_its_own_repo(cifar10, hub_server, tmp_path):
    repo_id, timm_repo_id = _unique_repo("timm-main"), _unique_repo("timm-export")
    argv = _recipe_args(cifar10, tmp_path / "out", repo_id) + ["--hub_timm_model_id", timm_repo_id]
    finetune.main([str(a) for a in argv])
    timm_files = hub_server.repo(timm_repo_id).head().files
    assert {"config.json", "model.safetensors", "README.md"} <= set(timm_files)
    assert "modeling_transfer.py" not in timm_files  # plain timm: no remote code
    assert "architecture" in json.loads(timm_files["config.json"])


def test_a_model_that_cannot_be_exported_to_timm_fails_before_training(cifar10, hub_server, tmp_path):
    argv = _recipe_args(cifar10, tmp_path / "never", _unique_repo("timm-main"))
    argv += ["--hub_timm_model_id", _unique_repo("timm-export"), "--head", "mlp", "--head_hidden_sizes", "8"]
    with pytest.raises(ValueError, match="Cannot export .* head is an MLP"):
        finetune.main([str(a) for a in argv])
    assert not (tmp_path / "never" / "trainer_state.json").exists()
