"""Write benchmark reports into the README's tables: `python -m bench.readme` replaces each block between
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` with the table rendered from $WORKBENCH_HOME/bench/NAME.json
(the report the last `make bench` left), so the numbers there are never typed by hand."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bench.engine import BINDING, NATIVE, llama_reference
from bench.server import NATIVE as SERVER_NATIVE
from prompting import numbers
from prompting.stats import Interval

README = Path(__file__).resolve().parent.parent / "README.md"


def idle_table(report: dict) -> str:
    """Idle CPU per process, with no browser and with one tab open (percent of one core)."""
    kinds = list(report)
    names = list(report[kinds[0]])
    head = "| process | " + " | ".join(f"{kind} (one core = 100 %)" for kind in kinds) + " |\n"
    rule = "|---|" + "---|" * len(kinds) + "\n"
    rows = "\n".join(
        f"| {name} | " + " | ".join(f"{report[k][name]:.2f} %" for k in kinds) + " |" for name in names
    )
    return head + rule + rows


def stats_table(report: dict) -> str:
    return (
        "| measure | value | target |\n|---|---|---|\n"
        f"| compare two runs of {report['cells']:,} cells (2,000 bootstrap resamples) | {report['compare_s']:.2f} s "
        "| ≤ 2 s |"
    )


def runner_table(report: dict) -> str:
    rows = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| runner overhead per cell (instant fake provider) | {report['overhead_ms_per_cell']:.2f} ms | ≤ 5 ms |",
        f"| writing 10,000 results (one commit each) | {report['write_10k_s']:.2f} s | ≤ 2 s |",
    ]
    if "speedup" in report:
        rows.append(
            f"| {report['cases']} cases against the local engine, concurrency 8 vs 1 "
            f"| {report['engine_serial_s']:.1f} s → {report['engine_concurrency8_s']:.1f} s = "
            f"**{report['speedup']:.2f}×** | ≥ 3× |"
        )
    return "\n".join(rows)


def structured_table(report: dict) -> str:
    r = report
    return (
        "| cases | schema-valid, free → constrained | decode tok/s free → constrained | overhead "
        "| constrained tok/s, drafts off | identical tokens | grammar per token (median / mean) |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {r['cases']} ({', '.join(r['kinds'])}) "
        f"| {r['schema_valid_free']:.0%} → **{r['schema_valid_constrained']:.0%}** "
        f"| {r['decode_tps_unconstrained']:.1f} → {r['decode_tps_constrained']:.1f} "
        f"| **{100 * r['decode_overhead']:+.1f} %** (target ≤ 15 %) | {r['decode_tps_constrained_no_drafts']:.1f} "
        f"| {'yes' if r['identical_without_drafts'] else 'no'} "
        f"| {r['grammar_us_per_token_median'] / 1000:.2f} / {r['grammar_us_per_token_mean'] / 1000:.2f} ms |"
    )


def example_description(name: str) -> str:
    """The leading comment of examples/NAME.yaml, as one line (words, not measurements: read at render time)."""
    path = README.parent / "examples" / f"{name}.yaml"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    comment = []
    for line in lines:
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("# ").strip())
    return " ".join(comment).replace("|", "\\|")


def techniques_table(report: dict) -> str:
    rows = [
        "| example (`examples/NAME.yaml`) | what it shows | strategy run | passed | pass rate (95 % interval) |",
        "|---|---|---|---|---|",
    ]
    for r in report["results"]:
        n = r["cases"] - r.get("errors", 0)
        ci = f" ({numbers.percent_interval(Interval(*r['ci']), n)})" if r.get("ci") else ""
        rows.append(
            f"| {r['example']} | {example_description(r['example'])} | {r['strategy']} "
            f"| {r['passed']} of {r['cases']} | {numbers.percent(r['pass_rate'], n)}{ci} |"
        )
    return "\n".join(rows)


def _ratio(value: float | None, base: dict | None, key: str) -> str:
    return f"{value / base[key]:.2f}×" if value and base and base.get(key) else "—"


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def engine_table(report: dict) -> str:
    results = report["results"]
    hf = next((r for r in results if r["system"] == "transformers"), None)
    cpp = llama_reference(results)
    names = {
        "transformers": "none (fp32 `generate`)",
        "llama.cpp": "GGUF Q4_1",
        NATIVE: "GGUF Q4_1 (llama-bench)",
        BINDING: "GGUF Q4_1 (llama-cpp-python)",
    }
    versus = "vs llama.cpp native" if cpp and cpp["system"] == NATIVE else "vs llama.cpp"
    rows = [
        f"| system | method | decode tok/s | vs HF | {versus} | prefill tok/s | ppl | ppl Δ | KLD | linear MB | "
        "bits/param | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        method = names.get(r["system"], r["method"])
        if r["system"] == "ours" and r["method"] == report.get("default_method"):
            method = f"**{method}** (default)"
        delta = r.get("ppl_delta_pct")
        rows.append(
            f"| {r['system']} | {method} | {_num(r['decode_tok_s'], '.1f')} | "
            f"{_ratio(r['decode_tok_s'], hf, 'decode_tok_s')} | {_ratio(r['decode_tok_s'], cpp, 'decode_tok_s')} | "
            f"{_num(r['prefill_tok_s'], '.0f')} | {_num(r['ppl'], '.3f')} | "
            f"{'—' if delta is None else f'{delta:+.2f} %'} | {_num(r.get('kld'), '.4f')} | "
            f"{_num(r['weight_bytes'] / 1e6, '.1f')} | "
            f"{_num(r.get('bits_per_param'), '.2f')} | {_num(_mega(r['peak_rss_bytes']), '.0f')} |"
        )
    cpu = f"\n\nMeasured on {report['cpu']}, {report['threads']} threads." if report.get("cpu") else ""
    return "\n".join(rows) + cpu + "\n\n" + calibrated_table(results)


def _mega(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def calibrated_table(results: list[dict]) -> str:
    """GPTQ and AWQ beside round-to-nearest on the same grid (bits, group): perplexity and bits per parameter."""
    import quant_methods

    by_setting: dict[tuple[int, int], dict[str, dict]] = {}
    for r in results:
        if r["system"] != "ours":
            continue
        name, group, bits = quant_methods.parse_bits(r["method"])
        if name in quant_methods.CALIBRATED:
            by_setting.setdefault((bits, group), {})[name] = r
    rows = [
        "| bits, group | ppl rtn / gptq / awq | KLD rtn / gptq / awq | bits/param (each) |",
        "|---|---|---|---|",
    ]
    for (bits, group), found in sorted(by_setting.items(), reverse=True):
        ppl = [_num(found[m]["ppl"], ".3f") if m in found else "—" for m in ("rtn", "gptq", "awq")]
        kld = [_num(found[m].get("kld"), ".4f") if m in found else "—" for m in ("rtn", "gptq", "awq")]
        size = next((f["bits_per_param"] for f in found.values() if f.get("bits_per_param")), None)
        rows.append(
            f"| {bits}-bit, group {group} | {' / '.join(ppl)} | {' / '.join(kld)} | {_num(size, '.2f')} |"
        )
    return "\n".join(rows)


def memory_table(report: dict) -> str:
    p, m = report["prefix"], report["peak"]
    rows = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| time to first token, {p.get('cases', 50)} cases after a {p.get('prefix_tokens', 1000):,}-token shared "
        f"prefix: no prefix cache / prefix cache | {p['ttft_plain_s'] * 1000:.0f} ms / {p['ttft_cached_s'] * 1000:.0f}"
        f" ms = **{p['ttft_ratio']:.1f}×** | ≥ 5× |",
        f"| peak KV blocks' bytes of {m['requests']} concurrent requests ({min(m['lengths']):,}–{max(m['lengths']):,} "
        f"tokens) / their tokens × bytes per token | **{m['peak_ratio']:.3f}×** ({m['peak_kv_bytes'] / 1e6:,.0f} MB) "
        "| ≤ 1.2× |",
        f"| the same, had every row grown to the longest sequence | {m['grow_to_longest_ratio']:.2f}× | — |",
        "",
        "| KV dtype | bytes per token | smaller than fp32 | perplexity | Δ vs fp32 KV |",
        "|---|---|---|---|---|",
    ]
    for r in report["kv"]:
        rows.append(
            f"| {r['kv_dtype']} | {r['kv_bytes_per_token']:,} | {r['bytes_ratio']:.2f}× | {r['ppl']:.3f} | "
            f"{r['ppl_delta_pct']:+.2f} % |"
        )
    return "\n".join(rows)


def server_table(report: dict) -> str:
    systems = report["systems"]
    native = systems.get(SERVER_NATIVE)
    rows = [
        "| server | tok/s at concurrency 1 | 4 | 16 | 16 vs 1 | ours vs llama-server (c=1 / c=16) "
        "| load: requests at concurrency 32 | load tok/s | p50 / p95 latency | TTFT p50 | RSS before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "llama.cpp": "llama-cpp-python server (binding)",
        SERVER_NATIVE: "llama-server --parallel 16 (native)",
    }
    for name, m in systems.items():
        t = {int(k): v for k, v in m["throughput"].items()}
        versus = "—"
        if native and name == "ours":
            n = {int(k): v for k, v in native["throughput"].items()}
            versus = f"**{t[1] / n[1]:.2f}×** / **{t[16] / n[16]:.2f}×**"
        errors = m["requests"] - m["ok"]
        rows.append(
            f"| {labels.get(name, name)} | {t[1]:.1f} | {t[4]:.1f} | {t[16]:.1f} | {t[16] / t[1]:.2f}× | {versus} | "
            f"{m['requests']} requests: {m['ok']} OK, {errors} errors | {m['tokens_per_s']:.1f} | "
            f"{m['p50_s']:.2f} s / {m['p95_s']:.2f} s | {m['ttft_p50_s']:.2f} s | "
            f"{m['rss_before'] / 1e6:.0f} → {m['rss_after'] / 1e6:.0f} MB |"
        )
    cpu = f"\n\nMeasured on {report['cpu']}, {report['threads']} threads." if report.get("cpu") else ""
    return "\n".join(rows) + cpu


def speculative_table(report: dict) -> str:
    rows = [
        "| prompts | decode tok/s plain → speculative | speedup (median of passes) | draft tokens accepted "
        "| identical tokens | target |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, target in (
        ("grounded", "grounded: copy, extract, rewrite", "≥ 1.5×"),
        ("open", "open-ended", "—"),
        ("sampled", "grounded, sampled at temperature 0.7 (seeded)", "≥ 1.3×"),
    ):
        if key not in report:
            continue
        r = report[key]
        accepted = "—" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        rows.append(
            f"| {label} ({r['prompts']}) | {r['plain_tok_s']:.1f} → {r['fast_tok_s']:.1f} | "
            f"**{r['speedup']:.2f}×** | {accepted} | {'yes' if r['identical'] else 'NO'} | {target} |"
        )
    return "\n".join(rows)


def peers_table(report: dict) -> str:
    """The client libraries' smoke checks, and lm-eval's scores against the engine's own scoring."""
    rows = ["| library | version | result | what it did |", "|---|---|---|---|"]
    for check in report["checks"]:
        detail = check["detail"].replace("|", "/").replace("\n", " ")
        rows.append(
            f"| {check['library']} | {check['version']} | {'ok' if check['ok'] else 'FAIL'} | {detail} |"
        )
    scoring = report.get("scoring")
    if scoring:
        rows.append(
            f"| lm-eval vs the engine's scoring | | "
            f"{'ok' if scoring['lm_eval_acc'] == scoring['engine_acc'] else 'FAIL'} | accuracy "
            f"{scoring['lm_eval_acc']:.2f} vs {scoring['engine_acc']:.2f}; largest per-choice log-likelihood "
            f"difference {scoring['max_loglik_diff']:.4f} nats |"
        )
    return "\n".join(rows)


def optimize_table(report: dict) -> str:
    """Per shipped suite: held-out baseline -> winner, the paired change with its interval and p, the validation
    gain and the gap between the two (the winner's curse), what won, and the budget used; then the null control."""
    from bench.optimize import covers_zero

    rows = [
        "| suite (cases; held-out) | held-out: start → winner | change, 95 % interval, p | validation gain "
        "| gap (validation − held-out) | the winner changed | candidates (pruned) · cells · minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["suites"]:
        n = r["heldout_cases"]
        if r["chosen"] and r["delta"] is not None:
            interval = numbers.points_interval(Interval(*r["delta_ci"]), n) if r["delta_ci"] else numbers.DASH
            change = f"**{numbers.points(r['delta'], n)}** ({interval}), p = {r['p_value']:.2g}"
            winner = numbers.percent(r["winner"], n)
        else:
            change, winner = "no candidate beat the start on validation", numbers.DASH
        gap = numbers.DASH if r["gap"] is None else numbers.points(r["gap"], n)
        rows.append(
            f"| {r['suite']} ({r['cases']}; {n}) | {numbers.percent(r['baseline'], n)} → {winner} | {change} "
            f"| {numbers.points(r['validation_gain'], n)} | {gap} | {r['changes'].replace('|', '/')} "
            f"| {r['candidates']} ({r.get('pruned', 0)}) · {r['cells']} · {r['minutes']:.0f} |"
        )
    text = "\n".join(rows)
    if report.get("null"):
        covered = sum(covers_zero(r) for r in report["null"])
        text += (
            f"\n\nNull control (sentiment with its labels shuffled among the cases, "
            f"budget {report['null_cells']} cells each): the held-out interval covers no change in "
            f"**{covered} of {len(report['null'])}** seeds."
        )
    return (
        text + f"\n\nMeasured on {report['cpu']}, budget {report['minutes_budget']:g} minutes per suite, "
        f"seed {report['seed']}."
    )


def traces_table(report: dict) -> str:
    """Importing the generated production log: time (median), what was kept and removed, what survived the scrub."""
    made = report["generated"]
    rows = [
        "| kept | seconds (median of {}) | calls read · malformed named | near-duplicates removed | personal values "
        "scrubbed | planted values left |".format(report["repeats"]),
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        scrubbed = ", ".join(f"{n:,} {kind}" for kind, n in sorted(r["scrubbed"].items()))
        rows.append(
            f"| {r['kept']:,} ({'a sample' if r['sample'] else 'all'}) | {r['seconds']:.1f} (target "
            f"{report['target_s']:.0f}) | {r['read']:,} · {r['malformed']} | {r['duplicates']:,} | {scrubbed} "
            f"| {r['survivors']} |"
        )
    rows.append(
        f"\n{report['lines']:,} generated lines ({made['malformed']} malformed, {made['near_duplicates']:,} "
        f"near-copies, {made['planted']:,} planted e-mail addresses and phone numbers); measured on {report['cpu']}."
    )
    return "\n".join(rows)


def redteam_table(report: dict) -> str:
    """Attack success per family on the guarded example and without its guardrails, paired on the same attacks."""

    def rate(row: dict) -> str:
        if not row["attacks"]:
            return numbers.DASH
        low, high = row["interval"]
        return (
            f"{row['successes']}/{row['attacks']} {numbers.percent(row['successes'] / row['attacks'])} "
            f"({numbers.percent(low)}–{numbers.percent(high)})"
        )

    rows = [
        "| family | guarded: succeeded (95 % interval) | unguarded: succeeded (95 % interval) "
        "| blocked only by guarded · only by unguarded | McNemar p (Holm) |",
        "|---|---|---|---|---|",
    ]
    changes = {c["family"]: c for c in report["changes"]}
    for guarded, unguarded in zip(report["guarded"], report["unguarded"], strict=True):
        change = changes[guarded["family"]]
        rows.append(
            f"| {guarded['family']} | {rate(guarded)} | {rate(unguarded)} "
            f"| {change['guarded_only']} · {change['unguarded_only']} | {change['p_holm']:.2g} |"
        )
    total = changes["all"]
    rows.append(
        f"| **all** | | | {total['guarded_only']} · {total['unguarded_only']} | {total['p']:.2g} (unadjusted) |"
    )
    return (
        "\n".join(rows)
        + f"\n\n{report['verdict']}.\n\n{report['graded']} graded attacks over {report['families']} families in "
        f"{report['minutes']:.1f} minutes, engine start included (target 15); forged sections that parsed: "
        f"{report['forged'][0]} guarded, {report['forged'][1]} unguarded. Measured on {report['cpu']}, seed "
        f"{report['seed']}, answers up to {report['max_tokens']} tokens per turn, {report['concurrency']} requests "
        "in flight."
    )


RENDERERS = {
    "redteam": redteam_table,
    "traces": traces_table,
    "optimize": optimize_table,
    "idle": idle_table,
    "stats": stats_table,
    "techniques": techniques_table,
    "engine": engine_table,
    "memory": memory_table,
    "server": server_table,
    "speculative": speculative_table,
    "structured": structured_table,
    "runner": runner_table,
    "peers": peers_table,
}


def main(argv: list[str] | None = None) -> int:
    from settings import get_settings

    folder = get_settings().home_dir / "bench"
    text = README.read_text(encoding="utf-8")
    for name, render in RENDERERS.items():
        report_path = folder / f"{name}.json"
        if not report_path.is_file():
            print(f"no {report_path}: run `python -m bench {name}` first", file=sys.stderr)
            continue
        table = render(json.loads(report_path.read_text()))
        pattern = re.compile(rf"(<!-- bench:{name} -->)\n(?:.*?\n)?(<!-- /bench:{name} -->)", re.S)
        text, count = pattern.subn(lambda m, table=table: f"{m.group(1)}\n{table}\n{m.group(2)}", text)
        print(f"{name}: {'updated' if count else 'no marked block in the README'}", file=sys.stderr)
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
