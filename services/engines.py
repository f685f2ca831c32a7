"""Local engine processes: the one place that starts, finds, lists and stops `workbench serve` for a model and
quantization method.

An engine at WORKBENCH_ENGINE_URL (the one `make run` starts) is used when it serves the wanted model@method;
otherwise one is started on a free loopback port, recorded, reused by this process, and stopped when the process
that started it exits. `ensure()` reports how long a start took, so a run can record start-up time on itself
instead of charging it to its first cells.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from prompting.providers import ProviderError
from settings import get_settings

START_TIMEOUT_S = 180


@dataclass
class EngineProcess:
    model: str
    quant: str
    url: str
    proc: subprocess.Popen | None = None  # None: not ours (the configured engine)
    started_at: float = field(default_factory=time.time)
    startup_s: float = 0.0

    @property
    def model_id(self) -> str:
        return f"{self.model}@{self.quant}"

    @property
    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None


@dataclass
class Ensured:
    url: str
    startup_s: float  # 0 when an engine was already serving


def serves(base_url: str, model_id: str, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{base_url}/models", timeout=timeout)
        return response.status_code == 200 and any(
            m.get("id") == model_id for m in response.json().get("data", [])
        )
    except (httpx.HTTPError, ValueError):
        return False


def configured_status(timeout: float = 1.5) -> dict | None:
    """The engine at WORKBENCH_ENGINE_URL: its model card and metrics, or None when nothing answers."""
    url = get_settings().engine_url.rstrip("/")
    try:
        models = httpx.get(f"{url}/models", timeout=timeout)
        if models.status_code != 200:
            return None
        card = models.json()["data"][0]
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=timeout)
        return {"url": url, "card": card, "metrics": metrics.json() if metrics.status_code == 200 else {}}
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workbench_command() -> str:
    return shutil.which("workbench") or str(Path(sys.executable).parent / "workbench")


class Engines:
    """The engines this process uses, keyed by model@method."""

    def __init__(self):
        self._known: dict[str, EngineProcess] = {}
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def ensure(self, model: str, quant: str) -> Ensured:
        """A base URL serving model@quant, starting an engine when none does."""
        model_id = f"{model}@{quant}"
        with self._lock:
            known = self._known.get(model_id)
            if known and known.alive:
                return Ensured(known.url, 0.0)
            configured = get_settings().engine_url.rstrip("/")
            if serves(configured, model_id):
                self._known[model_id] = EngineProcess(model, quant, configured)
                return Ensured(configured, 0.0)
            started = self._start(model, quant, _free_port())
            self._known[model_id] = started
            return Ensured(started.url, started.startup_s)

    def url_for(self, model: str, quant: str) -> str:
        return self.ensure(model, quant).url

    def _start(self, model: str, quant: str, port: int, detached: bool = False) -> EngineProcess:
        cmd = [workbench_command(), "serve", "--model", model, "--quant", quant, "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
        begin = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=detached)  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1"
        deadline = begin + START_TIMEOUT_S
        while time.time() < deadline:
            if proc.poll() is not None:
                raise ProviderError(
                    f"the local engine for {model}@{quant} exited: {proc.stderr.read().strip()[-500:]}"
                )
            if serves(url, f"{model}@{quant}"):
                return EngineProcess(model, quant, url, proc, begin, time.time() - begin)
            time.sleep(0.25)
        _stop(proc)
        raise ProviderError(
            f"the local engine for {model}@{quant} did not become ready in {START_TIMEOUT_S} s"
        )

    def start_configured(self, quant: str) -> None:
        """Start the default model at WORKBENCH_ENGINE_URL's port, detached (it outlives this process)."""
        settings = get_settings()
        port = int(settings.engine_url.rsplit(":", 1)[-1].split("/")[0])
        self._start(settings.default_model, quant, port, detached=True)

    def running(self) -> list[EngineProcess]:
        with self._lock:
            return [e for e in self._known.values() if e.alive]

    def stop_all(self) -> None:
        with self._lock:
            for engine in self._known.values():
                if engine.proc is not None:
                    _stop(engine.proc)
            self._known.clear()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


engines = Engines()


def local_tokenizer():
    """The default model's tokenizer (with its chat template) for exact token counts; None before `make setup`."""
    from engine.loader import converted_dir, is_converted

    name = get_settings().default_model
    if not is_converted(name):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted_dir(name))
