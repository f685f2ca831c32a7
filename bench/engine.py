"""Engine benchmark: our engine under every quantization method vs transformers fp32 and llama.cpp, one run.

llama.cpp is measured twice: its own `llama-bench` (tg128, pp512), built from source on this machine by
bench/llama_native.py, which is the anchor the "vs llama.cpp" ratios divide by; and through the llama-cpp-python
binding (its per-token Python overhead counts against it; `--no-binding` skips it). Each system/method runs in
its own process (peak memory is its own), with the same thread count; speeds are medians of `--repeats` runs.
Decode: 128 greedy tokens after a ~40-token chat prompt. Prefill: 512 tokens. Perplexity: the fixed text
shipped in engine/data/perplexity.txt. Prints a table (stderr) and, with --json, one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

from bench.common import chat_ids, fmt, median_of, peak_rss_bytes, print_table, run_isolated, save_report

MODEL = "smollm2-135m-instruct"
CHAT_PROMPT = "Explain in a few sentences why the sky looks blue during the day and red at sunset."
PREFILL_TOKENS = 512
LLAMA_CPP_PIN = "llama-cpp-python==0.3.36"
KLD_TOKENS = 1024  # of the perplexity text: two [tokens, vocab] log-probability tables fit in memory at once


def _setup(threads: int):
    import torch

    torch.set_num_threads(threads)
    from engine.generate import PERPLEXITY_TEXT
    from engine.loader import load

    loaded = load(MODEL)
    tok = loaded.tokenizer
    chat = chat_ids(tok, [{"role": "user", "content": CHAT_PROMPT}])
    text_ids = tok(PERPLEXITY_TEXT.read_text(encoding="utf-8"))["input_ids"]
    return loaded, chat, text_ids


# NF4 has no CPU kernel and decodes at a few tokens/s: fewer tokens keep `make bench` within minutes.
NEW_TOKENS_OVERRIDE = {"nf4": 24}


def measure_ours(method: str, threads: int, repeats: int, new_tokens: int) -> dict:
    from engine.generate import Engine, calibration_ids, generate, perplexity
    from engine.model import build_model
    from engine.quantize import linear_weight_bytes, parse_method, quantize
    from engine.sampling import SamplingParams

    new_tokens = NEW_TOKENS_OVERRIDE.get(method, new_tokens)
    loaded, chat, text_ids = _setup(threads)
    model = build_model(loaded.config, dict(loaded.state_dict))
    parsed = parse_method(method)
    calibration = calibration_ids(loaded.tokenizer) if parsed.name in ("smoothquant", "gptq", "awq") else None
    quantize(model, parsed, calibration_ids=calibration, cache_key=loaded.name)
    del loaded.state_dict
    # prefill repeats: no cache hits; decode: plain greedy decoding (the speculative bench measures drafting)
    engine = Engine(model, loaded.tokenizer, max_batch=4, prefix_cache=False, draft_tokens=0)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0, min_tokens=new_tokens)
    generate(engine, chat, SamplingParams(max_new_tokens=4, temperature=0))  # warm-up

    def decode() -> float:
        request = generate(engine, chat, params)
        return (new_tokens - 1) / (time.time() - request.first_token_at)

    def prefill() -> float:
        start = time.perf_counter()
        generate(engine, text_ids[:PREFILL_TOKENS], SamplingParams(max_new_tokens=0))
        return PREFILL_TOKENS / (time.perf_counter() - start)

    weight_bytes, params_count = linear_weight_bytes(model)
    result = {
        "system": "ours",
        "method": method,
        "decode_tok_s": median_of(repeats, decode),
        "prefill_tok_s": median_of(repeats, prefill),
        "ppl": perplexity(engine, text_ids),
        "weight_bytes": weight_bytes,
        "bits_per_param": weight_bytes * 8 / params_count,
        "kv_bytes_per_token": engine.pool.bytes_per_token(),
        "peak_rss_bytes": peak_rss_bytes(),
        "decode_tokens": new_tokens,
    }
    # after the peak memory was read: the reference model below is the measurement's, not the method's
    result["kld"] = kl_divergence(model, text_ids[:KLD_TOKENS]) if parsed.name != "none" else 0.0
    return result


def kl_divergence(model, ids: list[int]) -> float:
    """Mean over positions of KL(P_none || P_method) of the next-token distributions on the perplexity text."""
    import torch

    from engine.loader import load
    from engine.model import build_model

    loaded = load(MODEL)
    reference = build_model(loaded.config, dict(loaded.state_dict))
    tokens = torch.tensor(ids)
    expected = torch.log_softmax(reference.forward_sequence(tokens), -1)
    del reference
    got = torch.log_softmax(model.forward_sequence(tokens), -1)
    return float((expected.exp() * (expected - got)).sum(-1).mean())


def measure_transformers(threads: int, repeats: int, new_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    loaded, chat, text_ids = _setup(threads)
    model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict, strict=False)
    model.tie_weights()
    model.eval()
    ids = torch.tensor([chat])
    model.generate(ids, max_new_tokens=4, do_sample=False)

    def decode() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model(ids)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return (new_tokens - 1) / (time.perf_counter() - start - prefill_s)

    def prefill() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model(torch.tensor([text_ids[:PREFILL_TOKENS]]), logits_to_keep=1)
        return PREFILL_TOKENS / (time.perf_counter() - start)

    with torch.no_grad():
        logits = model(torch.tensor([text_ids])).logits[0].float()
    nll = -torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(text_ids[1:])[:, None]).mean()
    n_params = (
        sum(p.numel() for n, p in model.named_parameters() if n.endswith("proj.weight"))
        + model.lm_head.weight.numel()
    )
    return {
        "system": "transformers",
        "method": "none",
        "decode_tok_s": median_of(repeats, decode),
        "prefill_tok_s": median_of(repeats, prefill),
        "ppl": math.exp(float(nll)),
        "weight_bytes": n_params * 4,
        "bits_per_param": 32.0,
        "kv_bytes_per_token": None,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def ensure_llama_cpp() -> str | None:
    """Install llama-cpp-python into this venv on demand; returns why not, or None when importable."""
    try:
        import llama_cpp  # noqa: F401

        return None
    except ImportError:
        pass
    print(f"installing {LLAMA_CPP_PIN} (builds llama.cpp from source; several minutes) ...", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", LLAMA_CPP_PIN], capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"llama-cpp-python could not be built: {done.stderr.strip().splitlines()[-1:]}"
    return None


def measure_llama_cpp(threads: int, repeats: int, new_tokens: int) -> dict:
    import numpy as np
    from llama_cpp import Llama

    from engine.loader import gguf_path

    loaded, chat, text_ids = _setup(threads)
    path = gguf_path(MODEL)
    llm = Llama(
        model_path=str(path),
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=2048,
        verbose=False,
        logits_all=True,
        n_batch=PREFILL_TOKENS,
    )
    eos = llm.token_eos()

    def decode() -> float:
        llm.reset()
        llm.eval(chat)
        produced, start = 0, time.perf_counter()
        while produced < new_tokens - 1:
            logits = np.array(llm.scores[llm.n_tokens - 1])
            logits[eos] = -np.inf
            llm.eval([int(logits.argmax())])
            produced += 1
        return produced / (time.perf_counter() - start)

    def prefill() -> float:
        llm.reset()
        start = time.perf_counter()
        llm.eval(text_ids[:PREFILL_TOKENS])
        return PREFILL_TOKENS / (time.perf_counter() - start)

    decode_s, prefill_s = median_of(repeats, decode), median_of(repeats, prefill)
    llm.reset()
    nll, count = 0.0, 0
    window = text_ids[:2048]
    llm.eval(window)
    scores = np.array(llm.scores[: len(window)], dtype=np.float64)
    for i in range(len(window) - 1):
        row = scores[i]
        top = row.max()
        nll -= row[window[i + 1]] - top - math.log(np.exp(row - top).sum())
        count += 1
    return {
        "system": BINDING,
        "method": "gguf-q4_1",
        "decode_tok_s": decode_s,
        "prefill_tok_s": prefill_s,
        "ppl": math.exp(nll / count),
        "weight_bytes": path.stat().st_size,
        "bits_per_param": None,
        "kv_bytes_per_token": None,
        "peak_rss_bytes": peak_rss_bytes(),
    }


NATIVE = "llama.cpp (native)"  # llama-bench, built from source on this machine (bench/llama_native.py)
BINDING = "llama.cpp (python binding)"  # llama-cpp-python: its per-token Python overhead counts against it


def measure_llama_native(threads: int, repeats: int, new_tokens: int) -> dict | None:
    """llama-bench's tg{new_tokens} and pp512 on the same GGUF (its averages over `repeats` runs)."""
    from bench import llama_native
    from engine.loader import gguf_path
    from settings import get_settings

    binaries = llama_native.ensure(LLAMA_CPP_PIN, get_settings().home_dir / "native")
    if isinstance(binaries, str):
        print(binaries, file=sys.stderr)
        return None
    path = gguf_path(MODEL)
    measured = llama_native.llama_bench(binaries, path, threads, PREFILL_TOKENS, new_tokens, repeats)
    return {
        "system": NATIVE,
        "method": "gguf-q4_1",
        "decode_tok_s": measured["decode_tok_s"],
        "prefill_tok_s": measured["prefill_tok_s"],
        "ppl": None,
        "weight_bytes": path.stat().st_size,
        "bits_per_param": None,
        "kv_bytes_per_token": None,
        "peak_rss_bytes": None,
        "build_options": list(binaries.options),
    }


def run_all(
    threads: int, repeats: int, new_tokens: int, methods: list[str], llama_cpp: bool, binding: bool = True
) -> dict:
    common = ["--threads", str(threads), "--repeats", str(repeats), "--new-tokens", str(new_tokens)]
    results = []
    for method in methods:
        print(f"ours {method} ...", file=sys.stderr)
        results.append(run_isolated("bench.engine", ["--one", f"ours:{method}", *common]))
    print("transformers fp32 ...", file=sys.stderr)
    results.append(run_isolated("bench.engine", ["--one", "transformers", *common]))
    if llama_cpp:
        print("llama.cpp native (llama-bench) ...", file=sys.stderr)
        results.append(measure_llama_native(threads, repeats, new_tokens))
    if llama_cpp and binding:
        why = ensure_llama_cpp()
        if why:
            print(why, file=sys.stderr)
        else:
            print("llama.cpp ...", file=sys.stderr)
            results.append(run_isolated("bench.engine", ["--one", "llama.cpp", *common]))
    results = [r for r in results if r]
    base = next((r["ppl"] for r in results if r["system"] == "ours" and r["method"] == "none"), None)
    for r in results:
        r["ppl_delta_pct"] = (r["ppl"] / base - 1) * 100 if base and r["ppl"] else None
    from bench.llama_native import cpu_name

    return {"threads": threads, "cpu": cpu_name(), "default_method": _default_method(), "results": results}


def _default_method() -> str:
    from settings import get_settings

    return get_settings().default_quant


def llama_reference(results: list[dict]) -> dict | None:
    """What the "vs llama.cpp" ratios divide by: the native binary where it was built, else the binding."""
    return next((r for r in results if r["system"] == NATIVE), None) or next(
        (r for r in results if r["system"] in (BINDING, "llama.cpp")), None
    )


def print_report(report: dict) -> None:
    results = report["results"]
    hf = next((r for r in results if r["system"] == "transformers"), None)
    cpp = llama_reference(results)
    rows = []
    for r in results:
        rows.append(
            [
                r["system"],
                r["method"],
                fmt(r["decode_tok_s"]),
                fmt(r["decode_tok_s"] / hf["decode_tok_s"], ".2f") + "x" if hf else "-",
                fmt(r["decode_tok_s"] / cpp["decode_tok_s"], ".2f") + "x" if cpp else "-",
                fmt(r["prefill_tok_s"], ".0f"),
                fmt(r["ppl"], ".3f"),
                fmt(r.get("ppl_delta_pct"), "+.2f"),
                fmt(r.get("kld"), ".4f"),
                fmt(r["weight_bytes"] / 1e6, ".1f"),
                fmt(r["bits_per_param"], ".2f"),
                fmt(r["peak_rss_bytes"] / 1e6 if r["peak_rss_bytes"] else None, ".0f"),
            ]
        )
    print(
        f"\nengine benchmark: {MODEL}, {report['threads']} threads on {report.get('cpu', 'this CPU')}, "
        f"default method {report['default_method']}",
        file=sys.stderr,
    )
    print_table(
        [
            "system",
            "method",
            "decode tok/s",
            "vs HF",
            "vs llama.cpp",
            "prefill tok/s",
            "ppl",
            "ppl Δ%",
            "KLD",
            "linear MB",
            "bits/param",
            "peak RSS MB",
        ],
        rows,
    )
    kv = next((r["kv_bytes_per_token"] for r in results if r.get("kv_bytes_per_token")), None)
    if kv:
        print(f"KV cache: {kv} bytes per token (fp32)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from engine.quantize import METHODS

    # gptq, awq and their round-to-nearest baseline also at 3 bits, group 64 (the plain names are 4-bit, group 128)
    methods = [*METHODS, "rtn-3b-g64", "gptq-3b-g64", "awq-3b-g64"]
    parser = argparse.ArgumentParser(prog="bench.engine", description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--methods", default=",".join(methods))
    parser.add_argument("--no-llama-cpp", action="store_true", help="Neither llama.cpp row.")
    parser.add_argument(
        "--no-binding", action="store_true", help="Skip the llama-cpp-python row (the native one stays)."
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        if args.one.startswith("ours:"):
            result = measure_ours(args.one[5:], args.threads, args.repeats, args.new_tokens)
        elif args.one == "transformers":
            result = measure_transformers(args.threads, args.repeats, args.new_tokens)
        else:
            result = measure_llama_cpp(args.threads, args.repeats, args.new_tokens)
        print(json.dumps(result))
        return 0
    report = run_all(
        args.threads,
        args.repeats,
        args.new_tokens,
        args.methods.split(","),
        not args.no_llama_cpp,
        not args.no_binding,
    )
    print_report(report)
    save_report("engine", report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
