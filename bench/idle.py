"""Idle CPU of the processes `make run` starts (engine, worker, UI) after they were used once: a run on the local
model under a second method (so the worker holds an on-demand engine, as after a quantization comparison), then
measured with no browser, with one tab open on the UI, and after that tab closed.

The UI must cost ~0 % when nobody uses it (its file watcher once kept a core busy rescanning the checkout), and
the worker's queue polling must stay small: on two cores, every idle percent is taken from the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import print_table, save_report
from services.net import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def start(home: str) -> tuple[dict[str, subprocess.Popen], str]:
    engine_port, ui_port = free_port(), free_port()
    from settings import get_settings

    # a fresh data folder, but the model cache (and its built kernels) of this machine
    env = {
        **os.environ,
        "WORKBENCH_HOME": home,
        "WORKBENCH_ENGINE_URL": f"http://127.0.0.1:{engine_port}/v1",
        "WORKBENCH_MODELS": str(get_settings().models_dir),
    }
    quiet = {"env": env, "cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = {
        "engine": subprocess.Popen([str(BIN / "workbench"), "serve", "--port", str(engine_port)], **quiet),
        "worker": subprocess.Popen([str(BIN / "workbench"), "worker"], **quiet),
        "ui": subprocess.Popen(
            [
                str(BIN / "streamlit"),
                "run",
                "app.py",
                "--server.port",
                str(ui_port),
                "--server.headless",
                "true",
                "--server.fileWatcherType",
                "none",
            ],
            **quiet,
        ),
    }
    wait_for(f"http://127.0.0.1:{engine_port}/health")
    wait_for(f"http://127.0.0.1:{ui_port}/_stcore/health")
    return procs, f"http://127.0.0.1:{ui_port}"


def cpu_percent(procs: dict[str, subprocess.Popen], seconds: float) -> dict[str, float]:
    """CPU time used over a window, as percent of one core (children included: Streamlit spawns none)."""
    handles = {name: psutil.Process(p.pid) for name, p in procs.items()}
    before = {name: sum(h.cpu_times()[:2]) for name, h in handles.items()}
    time.sleep(seconds)
    return {name: (sum(h.cpu_times()[:2]) - before[name]) / seconds * 100 for name, h in handles.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.idle", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=30.0, help="Seconds to wait before measuring.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="workbench-idle-")
    procs, url = start(home)
    report: dict[str, dict[str, float]] = {}
    try:
        use_once(home)
        time.sleep(args.settle)  # the run's and the start-up's work settles first
        report["no browser"] = measure(procs, args.seconds, args.repeats)
        browser = _open_session(url)
        if browser:
            time.sleep(args.settle)  # the first page's work
            report["one tab"] = measure(procs, args.seconds, args.repeats)
            browser.terminate()
            time.sleep(args.settle)
            report["tab closed"] = measure(procs, args.seconds, args.repeats)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    print("\nidle CPU under make run (percent of one core, medians)", file=sys.stderr)
    print_table(
        ["process", *report],
        [[name, *(f"{report[kind][name]:.2f}" for kind in report)] for name in procs],
    )
    save_report("idle", report)
    if args.json:
        print(json.dumps(report))
    return 0


def use_once(home: str, timeout: float = 600) -> None:
    """One small run on the local model at int8 (the configured engine serves int4), queued for the worker as the
    Runs page does; the worker starts an on-demand engine for it and keeps it until it has been idle a while."""
    own_home = os.environ.get("WORKBENCH_HOME")
    os.environ["WORKBENCH_HOME"] = home
    try:
        _queue_and_wait(timeout)
    finally:  # the report is saved in this machine's data folder, not the benchmark's temporary one
        if own_home is None:
            del os.environ["WORKBENCH_HOME"]
        else:
            os.environ["WORKBENCH_HOME"] = own_home


def _queue_and_wait(timeout: float) -> None:
    from prompting.providers import ProviderSpec
    from services import open_store, runs
    from services.specs import save_provider
    from settings import get_settings

    store = open_store()
    version = store.save_version("say", "Say {{ word }}.")
    suite = store.save_suite("idle", [{"vars": {"word": w}, "assertions": []} for w in ("yes", "no")])
    spec = ProviderSpec.parse(f"local:{get_settings().default_model}@int8")
    plan = runs.RunPlan(suite.id, [version.id], [save_provider(store, spec).id], params={"max_tokens": 4})
    run = runs.submit(store, plan)
    deadline = time.time() + timeout
    while store.get_run(run.id).status in ("queued", "running"):
        if time.time() > deadline:
            raise RuntimeError(f"the run {run.id} did not finish in {timeout:.0f} s")
        time.sleep(1)


def measure(procs: dict[str, subprocess.Popen], seconds: float, repeats: int) -> dict[str, float]:
    samples = [cpu_percent(procs, seconds) for _ in range(repeats)]
    return {name: statistics.median(s[name] for s in samples) for name in procs}


def _open_session(url: str) -> subprocess.Popen | None:
    """A headless Chromium with the UI open (a live session keeps its websocket), when Chromium is installed."""
    chromium = shutil.which("chromium")
    if not chromium:
        print("  chromium not installed: measuring without a browser session", file=sys.stderr)
        return None
    return subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    sys.exit(main())
