"""The `workbench` command: parse input, call one service per action, print.

Exit codes: 0 success, 1 a run below its pass threshold (or with errored cells), 2 invalid input (the message
names the place). Domain errors become one `error: ...` line on stderr; a traceback is never the user's problem.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import EXIT_INVALID


class WorkbenchGroup(click.Group):
    """Turns the domain errors of every layer into an `error:` line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        from services.errors import user_errors

        try:
            return super().invoke(ctx)
        except user_errors() as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_INVALID)


@click.group(cls=WorkbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Prompt engineering workbench: technique templates, a local quantized engine, suites and scores.

    Configuration comes from WORKBENCH_-prefixed environment variables (WORKBENCH_HOME, WORKBENCH_DB_URL,
    WORKBENCH_ENGINE_URL); see the README.
    """


from cli import (  # noqa: E402
    engine_commands,
    io_commands,
    optimize_commands,
    redteam_commands,
    review_commands,
    run_commands,
    runs_commands,
    template_commands,
    trace_commands,
)

for module in (
    template_commands,
    engine_commands,
    run_commands,
    runs_commands,
    io_commands,
    review_commands,
    optimize_commands,
    redteam_commands,
    trace_commands,
):
    module.register(main)
