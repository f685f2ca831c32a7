"""Local engine processes: the one place that starts, finds, lists and stops `workbench serve` for a model and
quantization method.

The engine at WORKBENCH_ENGINE_URL (the one `make run` starts) is used when it serves the wanted model@method.
Otherwise an engine is started on a free loopback port and recorded in $WORKBENCH_HOME/engines/, where every
process (worker, UI, CLI) finds and reuses it. Limits are explicit: at most WORKBENCH_MAX_ENGINES on-demand
engines run at once (starting one more stops the least recently active), and `reap()` stops those idle for
WORKBENCH_ENGINE_IDLE_S. A process stops the engines it started when it exits (engines started by a process that
was killed are stopped by the next `reap()` once idle). `ensure()` reports how long a start took, so a run
records start-up time on itself instead of charging it to its first cells.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import json
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from prompting.providers import ProviderError
from services.net import free_port
from settings import get_settings

START_TIMEOUT_S = 180


@dataclass
class EngineRecord:
    """An on-demand engine as the registry keeps it."""

    model: str
    quant: str
    port: int
    pid: int
    process_started: float
    started_at: float
    startup_s: float
    last_active: float
    requests_seen: int = 0

    @property
    def model_id(self) -> str:
        return f"{self.model}@{self.quant}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        try:
            return abs(psutil.Process(self.pid).create_time() - self.process_started) < 1.0
        except psutil.Error:
            return False


@dataclass
class Ensured:
    url: str
    startup_s: float  # 0 when an engine was already serving


@dataclass
class EngineInfo:
    """A row of the Engine page's list."""

    model_id: str
    url: str
    pid: int | None
    rss_mb: float | None
    idle_s: float | None
    on_demand: bool  # False: the configured engine (not started by us, never stopped for idleness)


@functools.cache
def probe_client() -> httpx.Client:
    """One HTTP client for looking at local engines (model cards, metrics). `httpx.get` builds a client per call,
    and with it a TLS context from the CA bundle: ~40 ms each, which made an idle worker's engine checks cost
    about 1 % of a core. Plain HTTP on loopback needs neither TLS nor proxies."""
    return httpx.Client(trust_env=False)


def serves(base_url: str, model_id: str, timeout: float = 2.0) -> bool:
    try:
        response = probe_client().get(f"{base_url}/models", timeout=timeout)
        return response.status_code == 200 and any(
            m.get("id") == model_id for m in response.json().get("data", [])
        )
    except (httpx.HTTPError, ValueError):
        return False


def metrics(base_url: str, timeout: float = 1.0) -> dict | None:
    try:
        response = probe_client().get(base_url.removesuffix("/v1") + "/metrics", timeout=timeout)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def configured_status(timeout: float = 1.5) -> dict | None:
    """The engine at WORKBENCH_ENGINE_URL: its model card and metrics, or None when nothing answers."""
    url = get_settings().engine_url.rstrip("/")
    try:
        models = probe_client().get(f"{url}/models", timeout=timeout)
        if models.status_code != 200:
            return None
        card = models.json()["data"][0]
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return None
    return {"url": url, "card": card, "metrics": metrics(url, timeout) or {}}


def workbench_command() -> str:
    return shutil.which("workbench") or str(Path(sys.executable).parent / "workbench")


def _rss_mb(pid: int | None) -> float | None:
    try:
        return psutil.Process(pid).memory_info().rss / 1e6 if pid else None
    except psutil.Error:
        return None


class Engines:
    """On-demand engines, shared by every process through the registry folder."""

    def __init__(self):
        self._lock = threading.Lock()
        self._mine: dict[str, EngineRecord] = {}  # started by this process (wherever the registry lives now)
        atexit.register(self._at_exit)

    # --- the registry ----------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        path = get_settings().home_dir / "engines"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def _locked(self):
        """One process at a time changes the registry (start, stop, reap)."""
        with self._lock, open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def records(self) -> list[EngineRecord]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                out.append(EngineRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def _path(self, model_id: str) -> Path:
        return self.folder / f"{model_id.replace('/', '_')}.json"

    def _write(self, record: EngineRecord) -> None:
        self._path(record.model_id).write_text(json.dumps(asdict(record)))

    def _forget(self, model_id: str) -> None:
        self._path(model_id).unlink(missing_ok=True)

    # --- finding and starting ----------------------------------------------------------------------------

    def ensure(self, model: str, quant: str) -> Ensured:
        """A base URL serving model@quant, starting an engine when none does."""
        model_id = f"{model}@{quant}"
        configured = get_settings().engine_url.rstrip("/")
        if serves(configured, model_id):
            return Ensured(configured, 0.0)
        with self._locked():
            for record in [*self.records(), *self._mine.values()]:
                if record.model_id == model_id and record.alive() and serves(record.url, model_id):
                    record.last_active = time.time()
                    self._write(record)
                    return Ensured(record.url, 0.0)
            self._make_room()
            record = self._start(model, quant, free_port())
            self._write(record)
            self._mine[model_id] = record
            return Ensured(record.url, record.startup_s)

    def url_for(self, model: str, quant: str) -> str:
        return self.ensure(model, quant).url

    def _make_room(self) -> None:
        """Stop least recently active engines until one more fits under the cap."""
        alive = sorted((r for r in self.records() if r.alive()), key=lambda r: r.last_active)
        while len(alive) >= get_settings().max_engines:
            self._stop_record(alive.pop(0))

    def _start(self, model: str, quant: str, port: int) -> EngineRecord:
        cmd = [
            workbench_command(),
            "serve",
            "--model",
            model,
            "--quant",
            quant,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        begin = time.time()
        log = (self.folder / f"{model}@{quant}.log").open("w")
        # its own session: it is not killed with the terminal of the process that happened to start it
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}/v1"
        while time.time() < begin + START_TIMEOUT_S:
            if proc.poll() is not None:
                log.close()
                tail = (self.folder / f"{model}@{quant}.log").read_text()[-500:].strip()
                raise ProviderError(f"the local engine for {model}@{quant} exited: {tail}")
            if serves(url, f"{model}@{quant}"):
                now = time.time()
                return EngineRecord(
                    model,
                    quant,
                    port,
                    proc.pid,
                    psutil.Process(proc.pid).create_time(),
                    begin,
                    round(now - begin, 2),
                    now,
                )
            time.sleep(0.25)
        proc.kill()
        raise ProviderError(
            f"the local engine for {model}@{quant} did not become ready in {START_TIMEOUT_S} s"
        )

    def start_configured(self, quant: str) -> None:
        """Start the default model at WORKBENCH_ENGINE_URL's port, detached (it outlives this process)."""
        settings = get_settings()
        port = int(settings.engine_url.rsplit(":", 1)[-1].split("/")[0])
        self._start(settings.default_model, quant, port)

    # --- watching and stopping ---------------------------------------------------------------------------

    def reap(self) -> list[str]:
        """Forget dead engines and stop those idle longer than the limit; returns the model ids stopped."""
        stopped = []
        idle_limit = get_settings().engine_idle_s
        with self._locked():
            for record in self.records():
                if not record.alive():
                    self._forget(record.model_id)
                    continue
                seen = metrics(record.url)
                busy = seen and (seen.get("running_sequences") or seen.get("queued_requests"))
                if seen and (busy or seen.get("requests_total", 0) != record.requests_seen):
                    record.last_active, record.requests_seen = time.time(), seen.get("requests_total", 0)
                    self._write(record)
                elif time.time() - record.last_active > idle_limit:
                    self._stop_record(record)
                    stopped.append(record.model_id)
        return stopped

    def listing(self) -> list[EngineInfo]:
        """The configured engine (when one answers) and every on-demand engine, for the Engine page."""
        rows = []
        status = configured_status(timeout=0.5)
        if status:
            rows.append(EngineInfo(status["card"]["id"], status["url"], None, None, None, False))
        now = time.time()
        for r in self.records():
            if r.alive():
                rows.append(EngineInfo(r.model_id, r.url, r.pid, _rss_mb(r.pid), now - r.last_active, True))
        return rows

    def stop(self, model_id: str) -> bool:
        with self._locked():
            for record in self.records():
                if record.model_id == model_id:
                    self._stop_record(record)
                    return True
        return False

    def _stop_record(self, record: EngineRecord) -> None:
        if record.alive():
            try:
                process = psutil.Process(record.pid)
                process.terminate()
                process.wait(timeout=10)
            except psutil.TimeoutExpired:
                process.kill()
            except psutil.Error:
                pass
        self._forget(record.model_id)
        self._mine.pop(record.model_id, None)

    def running(self) -> list[EngineRecord]:
        return [r for r in self.records() if r.alive()]

    def stop_all(self) -> None:
        """Stop every registered engine and every engine this process started."""
        with self._locked():
            for record in [*self.records(), *self._mine.values()]:
                self._stop_record(record)

    def _at_exit(self) -> None:
        for record in list(self._mine.values()):
            self._stop_record(record)


engines = Engines()


def local_tokenizer():
    """The default model's tokenizer (with its chat template) for exact token counts; None before `make setup`."""
    from engine.loader import converted_dir, is_converted

    name = get_settings().default_model
    if not is_converted(name):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted_dir(name))


def published_cards() -> list[dict]:
    """What every running engine publishes about itself in /v1/models (weights, bits per parameter, KV bytes
    per token): the one source of sizes the pages show."""
    cards = []
    for row in engines.listing():
        try:
            response = probe_client().get(f"{row.url}/models", timeout=1.0)
            cards += response.json().get("data", []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            continue
    return cards


@dataclass
class KVPlan:
    """The paged KV cache's memory for a planned load under one KV dtype (Engine page's calculator)."""

    kv_dtype: str
    bytes_per_token: int
    blocks_per_sequence: int
    shared_blocks: int  # full blocks of the shared prefix: held once, whatever the number of sequences
    bytes_shared: int  # with prefix caching
    bytes_unshared: int  # every sequence its own copy of the prefix
    fits: int | None  # sequences of this shape a pool of `pool_bytes` holds at once (None: no pool given)


def kv_plan(
    kv_dtype: str,
    bytes_per_token: int,
    block_size: int,
    tokens: int,
    sequences: int,
    shared_prefix: int,
    pool_bytes: int | None = None,
) -> KVPlan:
    """Blocks are whole: a sequence of `tokens` holds ceil(tokens / block_size) blocks; only full blocks of the
    prefix are shared (the engine keys a block by its complete content)."""
    per_sequence = -(-tokens // block_size)
    shared = min(shared_prefix, tokens) // block_size
    block_bytes = bytes_per_token * block_size
    blocks_shared = shared + sequences * (per_sequence - shared) if sequences else 0
    fits = None
    if pool_bytes is not None:
        # a sequence writes at least one block of its own (its next token), even when its prompt is all shared
        pool_blocks, own = pool_bytes // block_bytes, max(per_sequence - shared, 1)
        fits = 0 if pool_blocks < per_sequence else (pool_blocks - shared) // own
    return KVPlan(
        kv_dtype,
        bytes_per_token,
        per_sequence,
        shared,
        blocks_shared * block_bytes,
        sequences * per_sequence * block_bytes,
        fits,
    )


def bench_report(name: str) -> dict | None:
    """The last `make bench` report of that name, if any."""
    path = get_settings().home_dir / "bench" / f"{name}.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


def parameter_count(model: str) -> int | None:
    """Parameters of a converted Llama-family model, from its config.json (None when it is not converted):
    attention and MLP weights per layer, the embedding (and the head unless tied) and the norms."""
    config_path = get_settings().models_dir / model / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads = config["num_attention_heads"]
    kv_heads, head_dim = config.get("num_key_value_heads", heads), config.get("head_dim") or hidden // heads
    per_layer = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    per_layer += 3 * hidden * config["intermediate_size"]
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return layers * per_layer + embeddings + hidden * (2 * layers + 1)
