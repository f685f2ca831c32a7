"""The system prompt built from a task definition, an output format and guardrail rules.

Guardrail text is authored by the prompt designer (it is not data), so it is laid out with the active delimiter
style but not neutralised. For providers without a system role, `fold_system_into_user` moves it into the first
user message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from prompting.delimiters import DEFAULT_STYLE, format_section


@dataclass
class Guardrails:
    task: str = ""
    output_format: str = ""
    json_schema: dict[str, Any] | None = None
    rules: list[str] = field(default_factory=list)
    refusal: str = ""

    def is_empty(self) -> bool:
        return not (self.task or self.output_format or self.json_schema or self.rules or self.refusal)

    def system_prompt(self, style: str = DEFAULT_STYLE) -> str:
        parts = []
        if self.task.strip():
            parts.append(format_section("Task", self.task.strip(), style))
        fmt = self.output_format.strip()
        if self.json_schema:
            schema = json.dumps(self.json_schema, indent=2, sort_keys=True)
            lead = fmt or "Answer with one JSON object only, no prose around it."
            fmt = f"{lead}\nIt must validate against this JSON schema:\n{schema}"
        if fmt:
            parts.append(format_section("Output format", fmt, style))
        rules = [r.strip() for r in self.rules if r and r.strip()]
        if rules:
            parts.append(format_section("Rules", "\n".join(f"- {r}" for r in rules), style))
        if self.refusal.strip():
            parts.append(format_section("Refusal", self.refusal.strip(), style))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Guardrails:
        data = data or {}
        unknown = set(data) - {"task", "output_format", "json_schema", "rules", "refusal"}
        if unknown:
            raise ValueError(f"unknown guardrail keys: {', '.join(sorted(unknown))}")
        rules = data.get("rules") or []
        if isinstance(rules, str):
            rules = [line for line in rules.splitlines() if line.strip()]
        return cls(
            task=str(data.get("task") or ""),
            output_format=str(data.get("output_format") or ""),
            json_schema=data.get("json_schema") or None,
            rules=[str(r) for r in rules],
            refusal=str(data.get("refusal") or ""),
        )


def apply_guardrails(
    messages: list[dict[str, str]], guardrails: Guardrails, style: str = DEFAULT_STYLE
) -> list[dict[str, str]]:
    """Put the guardrail block first in the system message (creating one where the template has none)."""
    block = guardrails.system_prompt(style)
    if not block:
        return list(messages)
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{block}\n\n{out[0]['content']}"
    else:
        out.insert(0, {"role": "system", "content": block})
    return out


def fold_system_into_user(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For providers without a system role: system text leads the first user message."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]
