"""Engine processes have an owner: on-demand engines are listed, stopped when idle past the limit, and capped
(starting one more stops the least recently active). Real `workbench serve` processes on loopback ports."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services.engines import Engines
from tests.conftest import free_port

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parents[2]


def engine_rows(at: AppTest) -> list[str]:
    return [m.value.strip("*") for m in at.markdown if m.value.startswith(f"**{MODEL}@")]


def test_idle_engines_stop_and_a_cap_evicts_the_least_recently_used(monkeypatch):
    monkeypatch.setenv(
        "WORKBENCH_ENGINE_URL", f"http://127.0.0.1:{free_port()}/v1"
    )  # nothing configured there
    monkeypatch.setenv("WORKBENCH_MAX_ENGINES", "2")
    monkeypatch.setenv("WORKBENCH_ENGINE_IDLE_S", "600")
    engines = Engines()
    try:
        first = engines.ensure(MODEL, "int8")
        assert first.startup_s > 0 and engines.ensure(MODEL, "int8") == type(first)(first.url, 0.0)  # reused
        engines.ensure(MODEL, "int4")
        time.sleep(1.1)
        engines.ensure(MODEL, "int8")  # int8 is now the more recently used of the two
        engines.ensure(MODEL, "bf16")  # a third start under a cap of 2 stops int4
        assert sorted(r.model_id for r in engines.running()) == [f"{MODEL}@bf16", f"{MODEL}@int8"]

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/engine.py").run()
        assert not at.exception, at.exception
        assert sorted(engine_rows(at)) == [f"{MODEL}@bf16", f"{MODEL}@int8"]

        monkeypatch.setenv("WORKBENCH_ENGINE_IDLE_S", "2")
        time.sleep(3)
        at.run()  # the Engine page reaps: both engines are idle past the limit
        assert engine_rows(at) == [] and engines.running() == []
    finally:
        engines.stop_all()


def test_a_provider_follows_its_engine_when_it_is_stopped_and_started_again(monkeypatch):
    """A long-lived process (the worker, the UI) keeps one provider per spec; when its engine is stopped (idle,
    the cap, another test module's teardown) the next request finds or starts one instead of failing."""
    from prompting.providers import ProviderSpec
    from services.engines import engines
    from services.providers import provider_for

    monkeypatch.setenv("WORKBENCH_ENGINE_URL", f"http://127.0.0.1:{free_port()}/v1")
    provider = provider_for(ProviderSpec.parse(f"local:{MODEL}@int8"))
    question = [{"role": "user", "content": "What is the capital of France?"}]
    try:
        first = provider.chat(question, temperature=0, max_tokens=4)
        (before,) = [r.pid for r in engines.running()]
        engines.stop_all()
        again = provider.chat(question, temperature=0, max_tokens=4)
        (after,) = [r.pid for r in engines.running()]
    finally:
        engines.stop_all()
    assert again.text == first.text and after != before
