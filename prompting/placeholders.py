"""A template as a template: render it with each free variable left as a `{{ name }}` placeholder, the shape
OpenAI-style and Langfuse-style chat prompt templates (and promptfoo's nunjucks) use.

Delimiters and guardrails are applied; placeholders are never neutralised. Variables whose value changes the
prompt's structure — lists (few-shot examples become turns or sections) and variables with a fixed set of choices
(they select a branch) — cannot be placeholders: they are rendered with their value (the version's, else the
template's default or example) and listed as fixed. `fill()` substitutes values back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prompting.delimiters import neutralize

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Placeholder(str):
    """A variable's `{{ name }}` standing in for its value; the renderer leaves it as written."""

    def __new__(cls, name: str) -> Placeholder:
        return super().__new__(cls, "{{ " + name + " }}")


@dataclass
class TemplateExport:
    messages: list[dict[str, str]]
    variables: list[dict[str, Any]] = field(default_factory=list)  # the placeholders, with their descriptions
    fixed: dict[str, Any] = field(default_factory=dict)  # rendered with these values


def structural(variable) -> bool:
    """A list, a choice or an empty default (an empty section vanishes) shapes the prompt: never a placeholder."""
    return variable.type in ("list", "json") or bool(variable.choices) or variable.default == ""


def as_template(prompt, values: dict[str, Any] | None = None) -> TemplateExport:
    """`prompt` (a Prompt) rendered with placeholders for its free variables; `values` fixes some of them."""
    values = dict(values or {})
    bound = {**prompt.variables, **values}
    context, fixed, free = {}, {}, []
    for var in prompt.template.variables:
        if var.stages and prompt.template.stages and prompt.template.stages[0] not in var.stages:
            continue  # filled by a strategy at a later stage
        if var.name in bound and (structural(var) or var.name in values):
            context[var.name] = fixed[var.name] = bound[var.name]
        elif structural(var):
            context[var.name] = fixed[var.name] = var.default if var.default is not None else var.example
        else:
            context[var.name] = Placeholder(var.name)
            default = prompt.variables.get(var.name, var.default)  # a version's bound value is the default
            free.append(
                {
                    "name": var.name,
                    "description": var.description,
                    "required": default is None and var.required,
                    "default": default,
                    "example": var.example if var.example is not None else default,
                }
            )
    for (
        name
    ) in prompt.template.undeclared_variables():  # an inline prompt declares nothing: its names are free
        if name in values:
            context[name] = fixed[name] = values[name]
        else:
            context[name] = Placeholder(name)
            default = prompt.variables.get(name)
            free.append(
                {
                    "name": name,
                    "description": "",
                    "required": default is None,
                    "default": default,
                    "example": default,
                }
            )
    messages = prompt.render(context)
    return TemplateExport(messages, free, fixed)


def fill(
    messages: list[dict[str, str]], values: dict[str, Any], delimiter: str | None = None
) -> list[dict[str, str]]:
    """Substitute placeholders with values (neutralised for `delimiter`, as the renderer would)."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        text = str(values[name])
        return neutralize(text, delimiter) if delimiter else text

    return [{**m, "content": PLACEHOLDER.sub(value, m["content"])} for m in messages]
