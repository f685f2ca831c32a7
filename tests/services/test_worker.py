"""Runs as jobs: `workbench worker` processes drain the queue; a killed worker's run resumes at the next start
with only its missing cells; two workers on one PostgreSQL database never run a cell twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from prompting.providers import ProviderSpec
from services import open_store, runs, suites, worker
from services.specs import save_provider
from tests.conftest import wait_until

PG_URL = os.environ.get("WORKBENCH_TEST_PG_URL")
SUITE = """\
prompts: ["Say {{{{ word }}}}"]
providers:
  - id: openai:chat:fake-model
    config: {{apiBaseUrl: "{url}/v1", apiKeyEnvar: FAKE_KEY}}
tests:
{tests}
"""


def submit_echo_run(tmp_path: Path, url: str, cells: int, concurrency: int = 2) -> str:
    tests = "\n".join(
        f"  - {{vars: {{word: w{i}}}, assert: [{{type: contains, value: w{i}}}]}}" for i in range(cells)
    )
    path = tmp_path / "echo.yaml"
    path.write_text(SUITE.format(url=url, tests=tests))
    store = open_store()
    imported = suites.import_file(store, path)
    plan = runs.RunPlan(imported.suite_id, imported.version_ids, imported.provider_ids)
    return runs.submit(store, plan, concurrency=concurrency).id


def start_worker(env: dict) -> subprocess.Popen:
    exe = str(Path(sys.executable).parent / "workbench")
    return subprocess.Popen(
        [exe, "worker", "--poll", "0.1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_in_process_cancel_and_resume(tmp_path, fake_api):
    fake_api.script.delay_s = 0.05
    store = open_store()
    run_id = submit_echo_run(tmp_path, fake_api.url, 6, concurrency=1)
    done = []

    def cancel_after_two(result) -> None:
        done.append(result)
        if len(done) == 2:
            runs.cancel(store, run_id)

    worker.execute(store, run_id, on_result=cancel_after_two)
    assert store.get_run(run_id).status == "cancelled" and store.count_results(run_id) == 2
    worker.execute(store, run_id)
    assert store.get_run(run_id).status == "completed" and store.count_results(run_id) == 6
    assert len(fake_api.script.requests) == 6


def test_a_stop_event_interrupts_an_in_process_run_and_keeps_its_finished_cells(tmp_path, fake_api):
    """What `workbench run`'s Ctrl-C sets besides raising KeyboardInterrupt (which Python can drop)."""
    fake_api.script.delay_s = 0.05
    store = open_store()
    run_id = submit_echo_run(tmp_path, fake_api.url, 6, concurrency=1)
    stop, done = threading.Event(), []

    def stop_after_two(result) -> None:
        done.append(result)
        if len(done) == 2:
            stop.set()

    with pytest.raises(worker.Interrupted, match="stopped after 2 of 6 cells"):
        worker.execute(store, run_id, on_result=stop_after_two, stop=stop)
    assert store.get_run(run_id).status == "interrupted" and store.count_results(run_id) == 2
    assert store.cell_counts(run_id)["done"] == 2 and len(fake_api.script.requests) == 2


@pytest.mark.slow
def test_a_killed_worker_run_resumes_with_only_its_missing_cells(tmp_path, fake_api, isolated_home):
    fake_api.script.delay_s = 0.15
    store = open_store()
    run_id = submit_echo_run(tmp_path, fake_api.url, 12, concurrency=2)
    env = {**os.environ, "WORKBENCH_HOME": str(isolated_home)}
    first = start_worker(env)
    assert wait_until(lambda: store.count_results(run_id) >= 3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    stored = store.count_results(run_id)
    stored_words = {r.messages[-1]["content"] for r, _ in store.run_results(run_id)}
    requests_before = len(fake_api.script.requests)
    assert 3 <= stored < 12 and store.get_run(run_id).status == "running"
    second = start_worker(env)
    try:
        assert wait_until(lambda: store.get_run(run_id).status == "completed", timeout=60)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert store.count_results(run_id) == 12 and len(store.finished_cells(run_id)) == 12
    # cells stored before the kill were not requested again; a cell whose (sampled) answer was cached but not yet
    # stored at the kill is answered from its own run's cache, every other missing cell is requested once
    after = [r["messages"][-1]["content"] for r in fake_api.script.requests[requests_before:]]
    assert not stored_words & set(after)
    reused = sum(1 for r, _ in store.run_results(run_id) if r.cached)
    assert len(after) + reused == 12 - stored


@pytest.mark.slow
@pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL not available: set WORKBENCH_TEST_PG_URL (.ci/run starts one)"
)
def test_two_workers_on_postgresql_share_one_run_without_duplicates(tmp_path, fake_api, monkeypatch):
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"wb_workers_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    fake_api.script.delay_s = 0.1
    workers = []
    try:
        store = open_store(url)
        env = {**os.environ, "WORKBENCH_DB_URL": url}
        workers = [start_worker(env), start_worker(env)]
        assert wait_until(
            lambda: len(store.list_workers()) == 2
        )  # both wait on the queue before the run arrives
        run_id = submit_echo_run(tmp_path, fake_api.url, 40, concurrency=3)
        assert wait_until(lambda: store.get_run(run_id).status == "completed", timeout=90)
        assert store.count_results(run_id) == 40 and len(store.finished_cells(run_id)) == 40
        assert len(fake_api.script.requests) == 40  # no cell was requested twice
        with store.sql.connect() as conn:
            shares = conn.execute(
                text("SELECT worker_id, count(*) FROM run_cells WHERE run_id = :r GROUP BY worker_id"),
                {"r": run_id},
            ).all()
        assert len(shares) == 2 and sum(n for _, n in shares) == 40  # both workers took cells
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(timeout=30)
        open_store(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_a_provider_given_in_process_is_not_started_as_an_engine():
    store = open_store()
    spec = ProviderSpec.parse("local:nothing-here@int4")
    config = save_provider(store, spec)
    run = store.create_run(
        suite_id=store.save_suite("s", []).id,
        version_ids=[store.save_version("v", "x").id],
        provider_ids=[config.id],
    )
    from tests.fakes import FakeProvider

    worker.prepare_engines(
        store, run, {config.id: FakeProvider()}
    )  # would fail to start a model named nothing-here
    assert "engine_startup_s" not in (store.get_run(run.id).options or {})
