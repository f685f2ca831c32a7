"""Template versions: save what the Build page shows, list them, diff two, and resolve a reference (a stored
version or a library template) to a Prompt."""

from __future__ import annotations

import difflib
import json
from typing import Any

from prompting.guardrails import Guardrails
from prompting.strategies import Prompt
from prompting.templates import library_names, load
from services.specs import prompt_of
from store import Store, StoreError


def save(
    store: Store,
    template_name: str,
    values: dict[str, Any],
    delimiter: str,
    guardrails: Guardrails | None,
    note: str = "",
):
    """A new immutable version of a library template with its bound values, delimiter style and guardrails."""
    template = load(template_name)
    return store.save_version(
        template.name,
        template.source,
        variables=values,
        delimiter=delimiter,
        guardrails=guardrails.to_dict() if guardrails else None,
        note=note,
        library_ref=template_name,
    )


def version_labels(store: Store) -> dict[str, int]:
    return {v.label: v.id for v in store.list_versions()}


def resolve(store: Store, ref: str) -> tuple[Prompt, str]:
    """(prompt, label) for a stored version (name, name@vN, id) or a library template name or .j2 path."""
    try:
        version = store.get_version(ref)
    except StoreError:
        if ref not in library_names() and not ref.endswith(".j2"):
            raise
        template = load(ref)
        return Prompt(template), template.name
    return prompt_of(version), version.label


def diff(store: Store, first: str | int, second: str | int) -> str:
    """A unified diff of two versions: their settings, then their sources."""
    va, vb = store.get_version(first), store.get_version(second)

    def describe(v) -> list[str]:
        return [
            f"delimiter: {v.delimiter}",
            f"guardrails: {json.dumps(v.guardrails, sort_keys=True)}",
            f"variables: {json.dumps(v.variables, sort_keys=True, ensure_ascii=False)}",
            "---",
            *v.source.splitlines(),
        ]

    return "\n".join(difflib.unified_diff(describe(va), describe(vb), va.label, vb.label, lineterm=""))


def newest_label(store: Store) -> str | None:
    """The most recently saved user version (what a picker should offer first)."""
    versions = store.list_versions()
    return max(versions, key=lambda v: (v.created_at, v.id)).label if versions else None


def render_version(
    prompt: Prompt, values: dict[str, Any], delimiter: str | None = None
) -> list[dict[str, str]]:
    """A stored version rendered with these values (its bound values as defaults), in its delimiter style unless
    another is given."""
    if delimiter and delimiter != prompt.delimiter:
        prompt = Prompt(prompt.template, prompt.variables, delimiter, prompt.guardrails, prompt.drop_sections)
    return prompt.render(values)
