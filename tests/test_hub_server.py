"""The loopback Hub speaks enough of the Hub API for the real huggingface_hub and transformers clients."""

import uuid
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification


def _unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _tiny_bert(seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=100
    )
    return BertForSequenceClassification(config).eval()


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], rtol=0, atol=0, msg=name)


def test_endpoint_and_token_point_at_the_loopback_server(hub_server):
    from huggingface_hub import constants, get_token

    assert constants.ENDPOINT == hub_server.url
    assert hub_server.url.startswith("http://127.0.0.1:")
    assert get_token() == hub_server.token
    assert HfApi().whoami()["name"] == "test-user"


def test_push_to_hub_then_from_pretrained_gives_the_same_weights(hub_server):
    model = _tiny_bert(seed=0)
    name = _unique_name("pushed")
    commit = model.push_to_hub(name)  # no namespace: the server puts it under the token's user

    repo = hub_server.repo(f"test-user/{name}")
    assert commit.oid == repo.branches["main"]
    assert {"config.json", "model.safetensors", "README.md"} <= set(repo.head().files)

    loaded = AutoModelForSequenceClassification.from_pretrained(f"test-user/{name}")
    assert type(loaded) is BertForSequenceClassification
    _assert_same_weights(model, loaded.eval())


def test_every_commit_is_kept_and_loadable_by_sha(hub_server, tmp_path):
    api = HfApi()
    repo_id = f"test-user/{_unique_name('revisions')}"
    api.create_repo(repo_id)
    first, second = _tiny_bert(seed=1), _tiny_bert(seed=2)

    first.save_pretrained(tmp_path / "v1")
    commit_1 = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "v1", commit_message="v1")
    second.save_pretrained(tmp_path / "v2")
    commit_2 = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "v2", commit_message="v2")

    assert commit_1.oid != commit_2.oid
    assert [c.oid for c in hub_server.repo(repo_id).commits][-2:] == [commit_1.oid, commit_2.oid]
    _assert_same_weights(first, BertForSequenceClassification.from_pretrained(repo_id, revision=commit_1.oid))
    _assert_same_weights(second, BertForSequenceClassification.from_pretrained(repo_id))
    titles = [c.title for c in api.list_repo_commits(repo_id)]
    assert titles == ["v2", "v1", "initial commit"]


def test_snapshot_download_matches_the_stored_snapshot(hub_server, tmp_path):
    api = HfApi()
    repo_id = f"test-user/{_unique_name('snapshot')}"
    api.create_repo(repo_id)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "deeper" / "b.json").write_text('{"b": 1}')
    commit = api.upload_folder(repo_id=repo_id, folder_path=tmp_path)

    local = Path(snapshot_download(repo_id))

    stored = hub_server.repo(repo_id).files_at(commit.oid)
    downloaded = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert downloaded == stored
    assert sorted(api.list_repo_files(repo_id)) == sorted(stored)


def test_missing_file_and_revision_raise_the_hub_errors(hub_server):
    repo_id = f"test-user/{_unique_name('missing')}"
    HfApi().create_repo(repo_id)

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "does-not-exist.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch")


def test_bad_token_is_rejected(hub_server):
    bad = HfApi(token="hf_not_a_valid_token")
    with pytest.raises(HfHubHTTPError) as info:
        bad.whoami()
    assert info.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as info:
        bad.create_repo(_unique_name("nope"))
    assert info.value.response.status_code == 401
    assert not any(repo_id.startswith("test-user/nope-") for _, repo_id in hub_server.repos)


def test_writes_need_a_token(hub_server):
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(token=False).create_repo(f"test-user/{_unique_name('anonymous')}")
    assert info.value.response.status_code == 401


def test_create_repo_is_409_when_it_exists_unless_exist_ok(hub_server):
    api = HfApi()
    repo_id = f"test-user/{_unique_name('exists')}"
    api.create_repo(repo_id)
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(repo_id)
    assert info.value.response.status_code == 409


def test_failing_switch_answers_the_given_status(hub_server):
    with hub_server.failing("whoami", 503), pytest.raises(HfHubHTTPError) as info:
        HfApi().whoami()
    assert info.value.response.status_code == 503
    assert HfApi().whoami()["name"] == "test-user"
