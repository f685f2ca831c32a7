"""Session-wide fixtures: an isolated data folder per test, and the real default model loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.net import free_port, wait_for

__all__ = ["free_port", "wait_until"]  # tests import free_port from here

# The model cache is shared (read-mostly, filled by `make setup`); everything else lives in a temporary home.
_USER_HOME = Path(os.environ.get("WORKBENCH_HOME", "~/.workbench")).expanduser()
os.environ.setdefault("WORKBENCH_MODELS", str(_USER_HOME / "models"))
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.delenv("WORKBENCH_DB_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def default_model():
    """The real default model (fetched by `make setup`), loaded once for the whole session."""
    from engine.loader import load

    return load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def default_hf(default_model):
    """transformers' own model on the same weights: the reference the engine is tested against."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(default_model.config)
    model.load_state_dict(default_model.state_dict, strict=False)
    model.tie_weights()
    return model.eval()


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False): tests assert on the result."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class ThreadedServer:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(f"{self.url}/health", timeout, every=0.05)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def fake_api(monkeypatch):
    """The stand-in for a remote OpenAI-compatible API on a loopback port; its key comes from FAKE_KEY."""
    from tests.fake_openai import Script, fake_openai_app

    monkeypatch.setenv("FAKE_KEY", "sk-test-123")
    script = Script()
    with ThreadedServer(fake_openai_app(script)) as server:
        server.script = script
        yield server
