"""Checks before a run: does every case give every prompt the variables it needs? All problems are collected
(per case, per prompt), so one message says everything that must be fixed before anything is stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prompting.errors import MissingVariables, PromptingError

MAX_LISTED = 20


class PlanError(PromptingError):
    """A run that cannot work as planned; the message lists every problem found (up to MAX_LISTED)."""

    def __init__(self, problems: list[Problem], total_cases: int):
        self.problems = problems
        cases = len({p.case_index for p in problems})
        super().__init__(
            f"{cases} of {total_cases} case(s) cannot run, nothing was started: {listing(problems)}"
        )


@dataclass
class Problem:
    case_index: int
    case: str
    prompt: str
    missing: list[str]
    error: str = ""

    def __str__(self) -> str:
        if self.missing:
            return f"{self.case}: missing vars for prompt '{self.prompt}': {', '.join(self.missing)}"
        return f"prompt '{self.prompt}' cannot render {self.case}: {self.error}"


def case_label(
    description: str, variables: dict[str, Any], index: int, width: int = 40, noun: str = "case"
) -> str:
    """How a case is named to people: its description, else its variables (`country=France`), else its number."""
    if description:
        return description
    if variables:
        text = ", ".join(f"{k}={v}" for k, v in variables.items())
        return text if len(text) <= width else text[: width - 1] + "…"
    return f"{noun} {index + 1}"


def render_problems(
    prompts: Iterable[tuple[str, Callable[[dict], Any]]],
    cases: list[tuple[str, dict[str, Any]]],
    noun: str = "case",
) -> list[Problem]:
    """Render every prompt with every case's variables; each failure (missing variables named) is a Problem."""
    problems = []
    for prompt_label, render in prompts:
        for index, (description, variables) in enumerate(cases):
            label = description or f"{noun} {index + 1}"
            if not description and variables and noun == "case":  # a suite file's tests are located by line
                label += f" ({case_label('', variables, index)})"
            try:
                render(variables)
            except MissingVariables as exc:
                problems.append(Problem(index, label, prompt_label, exc.names))
            except PromptingError as exc:
                problems.append(Problem(index, label, prompt_label, [], str(exc)))
    return problems


def listing(problems: list[Problem]) -> str:
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return "; ".join(str(p) for p in problems[:MAX_LISTED]) + more
