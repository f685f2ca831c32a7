"""The job loop: claims queued cells, runs them through the runner, stores each result with its `done` mark.

A run is a job in the database, never work inside a page script or a CLI process: `workbench worker` drains the
queue for every page and terminal, and a `workbench run` with no worker alive runs an in-process worker for its
own run only. Workers heartbeat every HEARTBEAT_S; a worker whose process is gone (same host) or whose
heartbeat is older than STALE_AFTER is dead, and its claimed cells go back to the queue, so a killed run
resumes with exactly its missing cells at the next worker start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from prompting.providers import Provider
from prompting.runner import Cell, CellResult, Interrupted, Progress, ProviderHandle, Runner, VersionSpec
from services.providers import judge_for, provider_for, simulator_for
from services.runs import cache_policy, resume, run_cases
from services.specs import case_of, prompt_of, result_rows, spec_of
from store import Store

HEARTBEAT_S = 2.0
STALE_AFTER = timedelta(seconds=20)
POLL_S = 0.5
# Idle housekeeping (stopping idle engines) is asked for at most this often: each look is an HTTP request to every
# on-demand engine, which at every 0.5 s poll cost the idle worker (and the engines) a few percent of a core.
IDLE_EVERY_S = 5.0


def _process_started(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def is_alive(worker) -> bool:
    """A worker is alive while its heartbeat is fresh and, on this host, its process still runs."""
    beat = worker.heartbeat_at if worker.heartbeat_at.tzinfo else worker.heartbeat_at.replace(tzinfo=UTC)
    if datetime.now(UTC) - beat > STALE_AFTER:
        return False
    if worker.host == socket.gethostname():
        return abs(_process_started(worker.pid) - worker.process_started) < 1.0
    return True


def reap_dead(store: Store) -> int:
    """Forget dead workers and put their claimed cells back in the queue; returns the cells released."""
    dead = [w.id for w in store.list_workers() if not is_alive(w)]
    return store.remove_workers(dead)


def live_workers(store: Store, general_only: bool = True) -> list:
    """Workers alive now (by default only `workbench worker`s, not a CLI run's own)."""
    return [w for w in store.list_workers() if is_alive(w) and not (general_only and w.only_run)]


class Worker:
    """One worker process (or a CLI run's in-process worker when `only_run` is set)."""

    def __init__(
        self,
        store: Store,
        *,
        only_run: str | None = None,
        providers: dict[int, Provider] | None = None,
        embed=None,
        on_result: Callable[[CellResult], None] | None = None,
        stop: threading.Event | None = None,
    ):
        self.store, self.only_run = store, only_run
        self.providers, self.embed, self.on_result = providers, embed, on_result
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop = stop or threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="worker-heartbeat", daemon=True)

    def __enter__(self) -> Worker:
        reap_dead(self.store)
        pid = os.getpid()
        self.store.register_worker(self.id, socket.gethostname(), pid, _process_started(pid), self.only_run)
        self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.store.remove_workers([self.id])  # its unfinished claims go back to the queue

    def _heartbeat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.store.heartbeat(self.id)
            except Exception:  # a database hiccup: the next beat tries again
                pass

    # --- the loop ----------------------------------------------------------------------------------------

    def drain(self, progress: Callable[[Progress], None] | None = None) -> None:
        """Work until no runnable run is left (or `stop` is set)."""
        while not self.stop.is_set():
            runnable = self.store.runnable(self.only_run) if self.store.any_pending() else []
            if runnable:
                self.work_on(runnable[0].id, progress)
            elif self.only_run or not self.advance_optimizations():
                return

    def advance_optimizations(self) -> bool:
        """Step the optimisations this worker drives (claiming a new one if any waits); True when one moved.
        Their evaluation runs are ordinary runs, which `drain` executes between steps."""
        from services.optimize import step

        if not self.store.any_active_optimization():
            return False
        self.store.claim_optimization(self.id)
        moved = False
        for optimization_id in self.store.owned_optimizations(self.id):
            moved |= step(self.store, optimization_id, self.providers) == "advanced"
        return moved

    def serve_forever(self, poll_s: float = POLL_S, on_idle: Callable[[], None] | None = None) -> None:
        """`workbench worker`: drain, wait for new runs, repeat until stopped."""
        last_reap = last_idle = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_reap > STALE_AFTER.total_seconds() / 2:
                reap_dead(self.store)
                last_reap = time.monotonic()
            self.drain()
            if on_idle and time.monotonic() - last_idle >= IDLE_EVERY_S:
                on_idle()
                last_idle = time.monotonic()
            self.stop.wait(poll_s)

    def work_on(self, run_id: str, progress: Callable[[Progress], None] | None = None) -> Progress:
        """Claim and run this run's cells until none is pending; mark the run completed when every cell is."""
        run = self.store.get_run(run_id)
        if run.status == "queued":
            self.store.set_run_status(run_id, "running")
        prepare_engines(self.store, run, self.providers)
        options = run.options or {}
        runner = build_runner(
            self.store,
            run,
            concurrency=int(options.get("concurrency", 4)),
            providers=self.providers,
            embed=self.embed,
            stop=self.stop,
        )
        claimed: dict[Cell, int] = {}

        def sink(result: CellResult) -> None:
            self.store.save_result(*result_rows(run_id, result), cell_id=claimed.pop(result.cell))
            if self.on_result:
                self.on_result(result)

        total = sum(self.store.cell_counts(run_id).values())
        done = self.store.cell_counts(run_id)["done"]
        try:
            state = runner.run_cells(self._claims(run_id, claimed), sink, progress, done=done, total=total)
        except (Interrupted, KeyboardInterrupt):
            self.store.release_cells(cell_ids=list(claimed.values()))
            raise
        if self.store.finish_if_done(run_id):
            after_completion(self.store, run_id)
        return state

    def _claims(self, run_id: str, claimed: dict[Cell, int]) -> Iterator[Cell]:
        """Cells claimed one at a time, as the runner has room for them."""
        while not self.stop.is_set():
            got = self.store.claim_cells(run_id, self.id, 1)
            if not got:
                return
            for cell_id, key in got:
                cell = Cell(*key)
                claimed[cell] = cell_id
                yield cell


# --- building a stored run's runner, and running it here -----------------------------------------------


def build_runner(
    store: Store,
    run,
    *,
    concurrency: int = 4,
    providers: dict[int, Provider] | None = None,
    embed=None,
    judge=None,
    stop: threading.Event | None = None,
) -> Runner:
    """The runner for a stored run: its versions, providers (`providers` overrides how a configuration is
    reached) and cases, with the run's cache policy (`cache` in its options: reuse or fresh)."""
    versions = [store.get_version(v) for v in run.version_ids]
    specs = [
        VersionSpec(v.id, prompt_of(v), v.label, dict((v.options or {}).get("params") or {}))
        for v in versions
    ]
    handles = [
        ProviderHandle(pid, (providers or {}).get(pid) or provider_for(spec_of(store.get_provider(pid))))
        for pid in run.provider_ids
    ]
    cases = [case_of(c) for c in run_cases(store, run)]
    if embed is None:
        from prompting.embeddings import embed  # loads its model on first use only
    suite_config = store.get_suite(run.suite_id).config
    if judge is None:
        judge = judge_for(suite_config.get("judge"))
    return Runner(
        specs,
        handles,
        cases,
        repeats=run.repeats,
        strategy=run.strategy,
        params=run.params,
        concurrency=concurrency,
        cache=store.cache(),
        cache_policy=cache_policy(run),
        run_id=run.id,
        embed=embed,
        judge=judge,
        simulator=simulator_for(store, suite_config.get("simulator")),
        stop=stop or threading.Event(),
    )


def execute(
    store: Store,
    run_id: str,
    *,
    progress: Callable[[Progress], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    providers: dict[int, Provider] | None = None,
    embed=None,
    stop: threading.Event | None = None,
    **options: Any,
) -> Progress | None:
    """Queue a run's missing cells and work them off in this process (tests, and `workbench run` when no worker
    is alive). Raises Interrupted (run marked interrupted) when stopped (`stop` set) or on Ctrl-C."""
    resume(store, run_id, **options)
    state = None
    worker = Worker(store, only_run=run_id, providers=providers, embed=embed, on_result=on_result, stop=stop)
    with worker:
        try:
            while store.runnable(run_id):
                state = worker.work_on(run_id, progress)
        except (Interrupted, KeyboardInterrupt):
            store.set_run_status(run_id, "interrupted")
            raise
    return state


def prepare_engines(store: Store, run, providers: dict[int, Provider] | None = None) -> None:
    """Start the local engines a run needs before its first cell, and record their start-up time on the run
    (so it is not charged to the first cells' latency)."""
    from services.engines import engines

    startup = 0.0
    for pid in run.provider_ids:
        if providers and pid in providers:
            continue
        config = store.get_provider(pid)
        if config.kind == "local":
            startup += engines.ensure(config.model, config.quant).startup_s
    if startup:
        store.update_run_options(run.id, engine_startup_s=round(startup, 2))


def after_completion(store: Store, run_id: str) -> None:
    """Work that belongs to a finished run: a quantization sweep's run measures its engine."""
    run = store.get_run(run_id)
    if (run.options or {}).get("kind") == "sweep":
        from services.sweeps import sweep_measures

        store.update_run_options(run_id, measures=sweep_measures(store, run))


def spawn_worker() -> int:
    """Start a `workbench worker` in its own session (it outlives the process that starts it); returns its pid."""
    import subprocess

    from services.engines import workbench_command

    proc = subprocess.Popen(
        [workbench_command(), "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc.pid
