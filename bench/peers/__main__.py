"""`make peers`: one smoke check per client library against a live server, and lm-eval's scores against ours.

Starts `workbench serve` (the default model, int4) on a free loopback port, runs bench/peers/check.py with the
peers' own Python (.peers, the pinned libraries of bench/peers/requirements.txt), stops the server, then scores
every (question, choice) of lm-eval's run with the engine's own continuation scoring (`engine.generate.score`, in
this process, same model and quantization) and compares: each log-likelihood within LOGLIK_TOLERANCE and the same
accuracy. The report goes to the data folder (bench/peers.json) and the README's table (python -m bench.readme).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import print_table, save_report
from services.net import free_port, wait_for

MODEL, QUANT = "smollm2-135m-instruct", "int4"
PEERS_PYTHON = Path(".peers/bin/python")
CHECK = Path(__file__).resolve().parent / "check.py"
LOGLIK_TOLERANCE = 0.02  # nats: the server batches, the reference runs one request at a time
KEY = "peers"


def run_checks(out: Path) -> int:
    port = free_port()
    exe = str(Path(sys.executable).parent / "workbench")
    server = subprocess.Popen(
        [exe, "serve", "--quant", QUANT, "--port", str(port), "--api-key", KEY],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_for(f"http://127.0.0.1:{port}/health", proc=server, timeout=300)
        env = {**os.environ, "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        done = subprocess.run([str(PEERS_PYTHON), str(CHECK), base, f"{MODEL}@{QUANT}", str(out)], env=env)
        return done.returncode
    finally:
        server.terminate()
        server.wait(timeout=30)


def lm_eval_split(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's own split of a (context, continuation) pair: trailing spaces move to the continuation, the
    pair is encoded whole and the continuation is what follows the context's tokens."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return whole[: len(context_ids)], whole[len(context_ids) :]


def compare(lm_eval: dict) -> dict:
    from engine.generate import Engine, score

    engine = Engine.load(MODEL, QUANT)
    worst, right = 0.0, 0
    for item in lm_eval["items"]:
        ours = []
        for choice in item["choices"]:
            context_ids, continuation_ids = lm_eval_split(engine.tokenizer, item["context"], choice)
            ours.append(sum(score(engine, context_ids, continuation_ids)))
        worst = max(worst, *(abs(a - b) for a, b in zip(ours, item["loglikelihoods"], strict=True)))
        right += max(range(len(ours)), key=ours.__getitem__) == int(item["gold"])
    ours_acc = right / len(lm_eval["items"])
    return {"lm_eval_acc": lm_eval["acc"], "engine_acc": ours_acc, "max_loglik_diff": worst}


def main() -> int:
    if not PEERS_PYTHON.exists():
        print("the peers' environment is missing: run `make peers`, which installs it", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "peers.json"
        status = run_checks(out)
        report = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"checks": []}
    if "lm_eval" in report:
        report["scoring"] = compare(report.pop("lm_eval"))
        scoring = report["scoring"]
        agree = (
            scoring["lm_eval_acc"] == scoring["engine_acc"] and scoring["max_loglik_diff"] <= LOGLIK_TOLERANCE
        )
        status = status or (0 if agree else 1)
        print(
            f"lm-eval acc {scoring['lm_eval_acc']:.2f}, engine's own scoring {scoring['engine_acc']:.2f}, "
            f"largest log-likelihood difference {scoring['max_loglik_diff']:.4f} (tolerance {LOGLIK_TOLERANCE})"
        )
    rows = [
        [c["library"], c["version"], "ok" if c["ok"] else "FAIL", f"{c['seconds']:.0f}"]
        for c in report["checks"]
    ]
    print_table(["library", "version", "result", "seconds"], rows)
    save_report("peers", report)
    return status


if __name__ == "__main__":
    sys.exit(main())
