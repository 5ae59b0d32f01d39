"""Shared fixtures. Importing this module isolates the test session from the real Hub and the user's caches.

huggingface_hub reads `HF_ENDPOINT` (and its cache paths) once, when it is first imported, so the loopback Hub is
started and the environment is set here, at import time, before anything imports huggingface_hub or transformers.
Subprocesses started by tests inherit the same environment (endpoint, token, caches).
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `from hub_server import ...` in test modules

from hub_server import HubServer  # noqa: E402  (stdlib only: safe before huggingface_hub)

if "huggingface_hub" in sys.modules:
    raise RuntimeError(
        "huggingface_hub was imported before tests/conftest.py could point HF_ENDPOINT at the loopback test Hub; "
        "tests would reach the real Hub. Remove the early import (pytest plugin, sitecustomize, root conftest)."
    )

HUB_USER = "test-user"
HUB_TOKEN = "hf_test_token_0123456789"

_HUB = HubServer(tokens={HUB_TOKEN: HUB_USER}).start()
_HF_HOME = Path(tempfile.mkdtemp(prefix="hf_transfer_tests_home_"))

os.environ.update(
    {
        "HF_ENDPOINT": _HUB.url,
        "HF_TOKEN": HUB_TOKEN,
        "HF_HOME": str(_HF_HOME),
        "HF_HUB_CACHE": str(_HF_HOME / "hub"),
        "HF_TOKEN_PATH": str(_HF_HOME / "token"),
        "HF_DATASETS_CACHE": str(_HF_HOME / "datasets"),
        "HF_MODULES_CACHE": str(_HF_HOME / "modules"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
)
# Every Hub call goes to the loopback server, so "offline mode" from the caller's shell would only break the tests.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def hub_server() -> HubServer:
    """The loopback Hub this session talks to (`HF_ENDPOINT`), already running.

    `hub_server.url`, `hub_server.token` (valid, also in `HF_TOKEN`), `hub_server.repo(repo_id).commits` (every commit
    as a full snapshot, oldest first), `hub_server.failing("commit", 500)` to simulate an outage.
    """
    return _HUB


def pytest_terminal_summary(terminalreporter):
    if _HUB.unknown_requests:
        terminalreporter.section("loopback Hub: requests it does not implement (answered 404)")
        for request in sorted(set(_HUB.unknown_requests)):
            terminalreporter.write_line(request)


def pytest_unconfigure(config):
    _HUB.stop()
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models: they gain nothing from a second thread, and lose 10x when
    another process holds a core. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    # Marks used by transformers' common tests (tests/transformers_suite.py imports them from its sdist).
    for mark in ("torch_compile_test", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "flaky"):
        config.addinivalue_line("markers", f"{mark}: used by transformers' common model tests")


# ---------------------------------------------------------------------------------------------- recipe runs


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> Path:
    """A small CIFAR-10-schema dataset whose class is the image's colour (tests/recipe_runs.py), in the Hub layout."""
    import fixtures
    from recipe_runs import colour_cifar

    root = tmp_path_factory.mktemp("data")
    return fixtures.write_hub_layout(colour_cifar(), root / "colour_cifar10" / "plain_text").parent


@pytest.fixture(scope="module")
def shifted_colour_data(tmp_path_factory) -> Path:
    """The same images as `colour_data`, each labelled with the next class."""
    import fixtures
    from recipe_runs import colour_cifar

    root = tmp_path_factory.mktemp("shifted")
    return fixtures.write_hub_layout(colour_cifar(label_shift=1), root / "colour_cifar10" / "plain_text").parent


@pytest.fixture
def recipe_trainers(monkeypatch) -> list:
    """The trainers the recipe builds, each with `initial_state`: its model's state before training."""
    from modeling_utils import clone_state
    from recipe_runs import finetune

    trainers = []
    for name in ("TransferTrainer", "DistillationTrainer"):

        class Recording(getattr(finetune, name)):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.initial_state = clone_state(self.model)
                trainers.append(self)

        monkeypatch.setattr(finetune, name, Recording)
    return trainers
