"""Shared bench plumbing: chat prompts, medians, peak memory, subprocess isolation and table printing."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def chat_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """A chat's prompt token ids, the way the engine's server renders it for a model's chat template."""
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )


def median_of(repeats: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeats))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_isolated(module: str, args: list[str], timeout: float = 1800) -> dict[str, Any] | None:
    """Run `python -m module args` in a fresh process (so peak memory is its own); it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  {module} {' '.join(args)} failed: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return format(value, spec)
    return str(value)


def print_table(headers: list[str], rows: list[list[Any]], file=sys.stderr) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ),
            file=file,
        )
        if n == 0:
            print("  ".join("-" * w for w in widths), file=file)


def save_report(name: str, report: dict) -> None:
    """Keep the latest report in the data folder, where the Engine page reads it."""
    from settings import get_settings

    folder = get_settings().home_dir / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
