"""Idle CPU of the processes `make run` starts (engine, worker, UI), with one browser session open on the UI.

The UI must cost ~0 % when nobody uses it (its file watcher once kept a core busy rescanning the checkout), and
the worker's queue polling must stay small: on two cores, every idle percent is taken from the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.common import print_table, save_report

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def start(home: str) -> tuple[dict[str, subprocess.Popen], str]:
    engine_port, ui_port = _port(), _port()
    env = {**os.environ, "WORKBENCH_HOME": home, "WORKBENCH_ENGINE_URL": f"http://127.0.0.1:{engine_port}/v1"}
    quiet = {"env": env, "cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = {
        "engine": subprocess.Popen([str(BIN / "workbench"), "serve", "--port", str(engine_port)], **quiet),
        "worker": subprocess.Popen([str(BIN / "workbench"), "worker"], **quiet),
        "ui": subprocess.Popen([str(BIN / "streamlit"), "run", "app.py", "--server.port", str(ui_port),
                                "--server.headless", "true", "--server.fileWatcherType", "none"], **quiet),
    }  # fmt: skip
    _wait(f"http://127.0.0.1:{engine_port}/health")
    _wait(f"http://127.0.0.1:{ui_port}/_stcore/health")
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="workbench-idle-")
    procs, url = start(home)
    try:
        browser = _open_session(url)
        time.sleep(5)  # let the first page's work settle
        samples = [cpu_percent(procs, args.seconds) for _ in range(args.repeats)]
        if browser:
            browser.terminate()
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    report = {name: statistics.median(s[name] for s in samples) for name in procs}
    print("\nidle CPU under make run (percent of one core, medians)", file=sys.stderr)
    print_table(["process", "idle CPU %"], [[name, f"{value:.2f}"] for name, value in report.items()])
    save_report("idle", report)
    if args.json:
        print(json.dumps(report))
    return 0


def _open_session(url: str) -> subprocess.Popen | None:
    """A headless Chromium with the UI open (a live session keeps its websocket), when Chromium is installed."""
    chromium = shutil.which("chromium")
    if not chromium:
        print("  chromium not installed: measuring without a browser session", file=sys.stderr)
        return None
    return subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
