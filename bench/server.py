"""Server benchmark: aggregate decode throughput at concurrency 1/4/16 (medians of 3 passes), and a 500-request
load at concurrency 32 (throughput, p50/p95 latency, time to first token, errors, resident memory before/after),
against our engine server and, where it can be installed, llama-cpp-python's OpenAI-compatible server on the same
GGUF file. Every request goes over loopback through the official `openai` client."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import print_table, save_report
from services.net import free_port, wait_for

MODEL = "smollm2-135m-instruct"
SWEEP_CONCURRENCY = (1, 4, 16)
SWEEP_PASSES = 3  # the sweep's figures are medians of this many passes


def start_ours(quant: str, threads: int) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    exe = str(Path(sys.executable).parent / "workbench")
    proc = subprocess.Popen(
        [
            exe,
            "serve",
            "--quant",
            quant,
            "--port",
            str(port),
            "--max-batch",
            "16",
            "--max-queue",
            "64",
            "--threads",
            str(threads),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    wait_for(f"{url}/models", proc=proc, timeout=300)
    return proc, url, f"{MODEL}@{quant}"


def start_llama_cpp(threads: int) -> tuple[subprocess.Popen, str, str] | None:
    from bench.engine import LLAMA_CPP_PIN
    from engine.loader import gguf_path

    try:
        import llama_cpp.server.app  # noqa: F401  (needs the [server] extra's packages, not just llama_cpp)
    except ImportError:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                f"{LLAMA_CPP_PIN.split('==')[0]}[server]=={LLAMA_CPP_PIN.split('==')[1]}",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(
                f"llama-cpp-python server could not be installed: {done.stderr.strip()[-300:]}",
                file=sys.stderr,
            )
            return None
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path(MODEL)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            str(threads),
            "--n_ctx",
            "4096",
            "--model_alias",
            MODEL,
            # by default each new request interrupts the running one, which would truncate the load test
            "--interrupt_requests",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _ready(proc, port, "/v1/models", "llama-cpp-python server")


def _ready(
    proc: subprocess.Popen, port: int, probe: str, label: str
) -> tuple[subprocess.Popen, str, str] | None:
    """The started server once `probe` answers, or None (and the process stopped) if it never does."""
    try:
        wait_for(f"http://127.0.0.1:{port}{probe}", proc=proc, timeout=300)
    except RuntimeError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        proc.terminate()
        return None
    return proc, f"http://127.0.0.1:{port}/v1", MODEL


NATIVE = "llama.cpp (native)"  # llama-server --parallel 16, built from source on this machine
NATIVE_PARALLEL = 16


def start_llama_native(threads: int) -> tuple[subprocess.Popen, str, str] | None:
    """llama.cpp's own llama-server with continuous batching over NATIVE_PARALLEL slots (bench/llama_native.py)."""
    from bench import llama_native
    from bench.engine import LLAMA_CPP_PIN
    from engine.loader import gguf_path
    from settings import get_settings

    binaries = llama_native.ensure(LLAMA_CPP_PIN, get_settings().home_dir / "native")
    if isinstance(binaries, str):
        print(binaries, file=sys.stderr)
        return None
    port = free_port()
    command = llama_native.server_command(binaries, gguf_path(MODEL), threads, port, NATIVE_PARALLEL)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _ready(proc, port, "/health", "llama-server")


async def one_stream(client, model: str, prompt: str, max_tokens: int) -> dict:
    import openai

    start = time.perf_counter()
    first = None
    tokens = chunks = 0
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                if first is None:
                    first = time.perf_counter() - start
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
    except openai.APIStatusError as exc:
        return {"status": exc.status_code, "latency": time.perf_counter() - start}
    except openai.APIError as exc:
        return {"status": type(exc).__name__, "latency": time.perf_counter() - start}
    # usage when the server reports it, but never fewer than the content chunks seen (servers differ)
    return {
        "status": 200,
        "latency": time.perf_counter() - start,
        "ttft": first,
        "tokens": max(tokens, chunks),
    }


async def load(
    url: str, model: str, total: int, concurrency: int, max_tokens: int
) -> tuple[list[dict], float]:
    import httpx
    import openai

    client = openai.AsyncOpenAI(
        base_url=url,
        api_key="bench",
        max_retries=0,
        http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 4), timeout=600),
    )
    gate = asyncio.Semaphore(concurrency)

    async def task(i: int) -> dict:
        async with gate:
            return await one_stream(
                client, model, f"Write a short story about a robot, part {i}.", max_tokens
            )

    start = time.perf_counter()
    results = await asyncio.gather(*(task(i) for i in range(total)))
    elapsed = time.perf_counter() - start
    await client.close()
    return results, elapsed


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def sweep(url: str, model: str) -> dict:
    """Aggregate tokens/s at each concurrency: the median of SWEEP_PASSES passes, each pass running every
    concurrency once (so a change in the machine's load during the sweep hits all of them alike)."""
    runs: dict[int, list[float]] = {c: [] for c in SWEEP_CONCURRENCY}
    for _ in range(SWEEP_PASSES):
        for concurrency in SWEEP_CONCURRENCY:
            results, elapsed = asyncio.run(load(url, model, concurrency, concurrency, 64))
            runs[concurrency].append(sum(r.get("tokens", 0) for r in results) / elapsed)
    return {"throughput": {c: statistics.median(v) for c, v in runs.items()}, "throughput_runs": runs}


def measure(url: str, model: str, pid: int, quick: bool) -> dict:
    asyncio.run(load(url, model, 2, 2, 8))  # warm-up
    out = sweep(url, model)
    total = 100 if quick else 500
    before = rss(pid)
    results, elapsed = asyncio.run(load(url, model, total, 32, 32))
    after = rss(pid)
    ok = [r for r in results if r["status"] == 200]
    latencies = sorted(r["latency"] for r in ok)
    ttfts = sorted(r["ttft"] for r in ok if r.get("ttft") is not None)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    out.update(
        {
            "requests": total,
            "ok": len(ok),
            "statuses": statuses,
            "req_per_s": len(ok) / elapsed,
            "tokens_per_s": sum(r["tokens"] for r in ok) / elapsed,
            "p50_s": statistics.median(latencies) if latencies else None,
            "p95_s": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "rss_before": before,
            "rss_after": after,
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.server", description=__doc__)
    parser.add_argument("--quant", default=None, help="Method for our server (default: the default method).")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="100 instead of 500 requests in the load test.")
    parser.add_argument("--no-llama-cpp", action="store_true", help="Neither llama.cpp server.")
    parser.add_argument(
        "--no-binding", action="store_true", help="Skip llama-cpp-python's server (llama-server stays)."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from settings import get_settings

    quant = args.quant or get_settings().default_quant
    from bench.llama_native import cpu_name

    report = {"threads": args.threads, "cpu": cpu_name(), "systems": {}}
    servers = [("ours", lambda: start_ours(quant, args.threads))]
    if not args.no_llama_cpp:
        servers.append((NATIVE, lambda: start_llama_native(args.threads)))
        if not args.no_binding:
            servers.append(("llama.cpp", lambda: start_llama_cpp(args.threads)))
    for name, start in servers:
        print(f"{name} server ...", file=sys.stderr)
        started = start()
        if started is None:
            continue
        proc, url, model = started
        try:
            report["systems"][name] = measure(url, model, proc.pid, args.quick)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print_report(report, quant, args.threads)
    save_report("server", report)
    if args.json:
        print(json.dumps(report))
    return 0


def print_report(report: dict, quant: str, threads: int) -> None:
    rows = []
    base = report["systems"].get(NATIVE) or report["systems"].get("llama.cpp")
    for name, m in report["systems"].items():
        t = m["throughput"]
        usable = base and base["tokens_per_s"] and name == "ours"
        ratio = f"{m['tokens_per_s'] / base['tokens_per_s']:.2f}x" if usable else "-"
        rows.append(
            [
                name,
                f"{t[1]:.1f}",
                f"{t[4]:.1f}",
                f"{t[16]:.1f}",
                f"{t[16] / t[1]:.2f}x",
                f"{m['ok']}/{m['requests']}",
                json.dumps(m["statuses"]),
                f"{m['tokens_per_s']:.1f}",
                ratio,
                f"{m['p50_s']:.2f}",
                f"{m['p95_s']:.2f}",
                f"{m['ttft_p50_s']:.2f}",
                f"{m['rss_before'] / 1e6:.0f}->{m['rss_after'] / 1e6:.0f}",
            ]
        )
    print(f"\nserver benchmark: {MODEL}@{quant}, {threads} threads on {report.get('cpu')}", file=sys.stderr)
    print_table(
        [
            "server",
            "tok/s c=1",
            "c=4",
            "c=16",
            "16 vs 1",
            "load ok",
            "statuses",
            "load tok/s",
            "vs llama.cpp",
            "p50 s",
            "p95 s",
            "ttft p50 s",
            "RSS MB",
        ],
        rows,
    )


if __name__ == "__main__":
    sys.exit(main())
