from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_target_dir(tmp_path_factory):
    """A tiny target model directory (one token per ASCII character)."""
    from tests.tiny_dirs import save_tiny
    return save_tiny(tmp_path_factory.mktemp("tiny") / "target", seed=0)


@pytest.fixture(scope="session")
def tiny_draft_dir(tmp_path_factory):
    """A draft for tiny_target_dir: same vocabulary, weights perturbed so it sometimes disagrees."""
    from tests.tiny_dirs import save_tiny
    return save_tiny(tmp_path_factory.mktemp("tiny") / "draft", seed=0, draft_noise=0.1)


@pytest.fixture(scope="session")
def tiny_other_vocab_dir(tmp_path_factory):
    """Same size and architecture as tiny_target_dir, but different token strings."""
    from tests.tiny_dirs import save_tiny
    return save_tiny(tmp_path_factory.mktemp("tiny") / "other-vocab", seed=0, other_vocabulary=True)


# The server of the serve tests (tests/serving.py): one per test module that asks for it.
@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_target_dir, tiny_draft_dir):
    from tests.serving import _start
    process, base = _start(tmp_path_factory.mktemp("home"), tiny_target_dir, tiny_draft_dir)
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    import openai
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
