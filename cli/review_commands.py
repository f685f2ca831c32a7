"""`workbench label set|list|history`, `workbench rate` and `workbench promote`: version labels and human review."""

from __future__ import annotations

import click

from cli.common import store


@click.group()
def label() -> None:
    """Version labels (production, staging, ...): each points at one version of a template; every move is kept."""


@label.command("set")
@click.argument("version")
@click.argument("name")
def label_set(version: str, name: str) -> None:
    """Point label NAME at VERSION (NAME@vN, an id, or another label such as co_star@staging)."""
    from services import labels

    moved = labels.move(store(), version, name)
    before = f" (was {moved.before})" if moved.before else ""
    click.echo(f"{moved.template}@{name} -> {moved.after}{before}")


@label.command("list")
@click.argument("template", required=False)
def label_list(template: str | None) -> None:
    """Every label, or a template's, with the version it points at."""
    from services import labels

    for row in labels.labels(store(), template):
        click.echo(f"{row.template}@{row.label} -> {row.version}")


@label.command("history")
@click.argument("template")
@click.option("--label", "only", default=None, help="Only this label's moves.")
def label_history(template: str, only: str | None) -> None:
    """Every move of a template's labels: when, who, from which version to which."""
    from services import labels

    for move in labels.history(store(), template, only):
        click.echo(f"{move.at:%Y-%m-%d %H:%M:%S}  {move.who}  {move.text}")


@click.command()
@click.argument("result_id", type=int)
@click.argument("verdict", type=click.Choice(["pass", "fail"]))
@click.option("--score", type=click.IntRange(1, 5), default=None, help="1 (bad) to 5 (excellent).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--comment", default="", help="Why.")
def rate(result_id: int, verdict: str, score: int | None, tags: tuple[str, ...], comment: str) -> None:
    """Rate a stored cell (its id is in `runs show --json`); the rating follows the same output everywhere."""
    from services import reviews

    rating = reviews.rate(
        store(), result_id, verdict == "pass", score=score, tags=list(tags), comment=comment
    )
    click.echo(f"rated result {result_id}: {verdict} by {rating.reviewer}")


@click.command()
@click.argument("result_id", type=int)
@click.option(
    "--as",
    "how",
    type=click.Choice(["equals", "similar", "rubric", "not"]),
    default="equals",
    show_default=True,
    help="How the rated output becomes an assertion of its case.",
)
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.8, show_default=True, help="For similar.")
def promote(result_id: int, how: str, threshold: float) -> None:
    """Turn a rated output into an assertion of its case, in a new version of the suite (suites are immutable)."""
    from services import reviews

    name = reviews.promote(store(), result_id, how, threshold)
    click.echo(f"new suite {name}")


def register(main: click.Group) -> None:
    for command in (label, rate, promote):
        main.add_command(command)
