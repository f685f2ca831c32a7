"""Write benchmark reports into the README's tables: `python -m bench.readme` replaces each block between
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` with the table rendered from $WORKBENCH_HOME/bench/NAME.json
(the report the last `make bench` left), so the numbers there are never typed by hand."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def idle_table(report: dict) -> str:
    rows = "\n".join(f"| {name} | {value:.2f} % |" for name, value in report.items())
    return "| process | idle CPU (one core = 100 %) |\n|---|---|\n" + rows


def stats_table(report: dict) -> str:
    return ("| measure | value | target |\n|---|---|---|\n"
            f"| compare two runs of {report['cells']:,} cells (2,000 bootstrap resamples) | {report['compare_s']:.2f} s "
            "| ≤ 2 s |")  # fmt: skip


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
        "| example (`examples/NAME.yaml`) | what it shows | strategy run | passed | pass rate [95 % interval] |",
        "|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ci = f" [{r['ci'][0]:.0%}, {r['ci'][1]:.0%}]" if r.get("ci") else ""
        rate = "–" if r["pass_rate"] is None else f"{r['pass_rate']:.0%}{ci}"
        rows.append(
            f"| {r['example']} | {example_description(r['example'])} | {r['strategy']} | {r['passed']} of {r['cases']} | {rate} |"
        )
    return "\n".join(rows)


RENDERERS = {"idle": idle_table, "stats": stats_table, "techniques": techniques_table}


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
