"""Exports that the tools they target accept: the `.j2` template (with what a stored version bound), an OpenAI
chat prompt template with `{{ name }}` placeholders (or filled messages), a Chat Completions request body, and a
promptfoo config that `promptfoo eval` runs. Shared by `workbench export` and the Export page.

Names: `NAME@vN` (or `@latest`, or an id) is a stored version; `library:NAME` the library template; a bare
NAME is the library template when there is one (a note says when stored versions share the name), else that
name's latest stored version. Secrets are never exported: remote providers carry the name of their key's
environment variable only.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from prompting.placeholders import as_template
from prompting.strategies import Prompt
from prompting.templates import library_names, load
from services.specs import prompt_of
from settings import get_settings
from store import Store

DEFAULT_REQUEST_PARAMS = {"temperature": 0, "max_tokens": 256}


@dataclass
class Resolved:
    prompt: Prompt
    label: str
    version: Any = None  # the stored version, when it is one
    note: str | None = None  # said to the user (e.g. which of two same-named things was exported)


def resolve(store: Store, ref: str) -> Resolved:
    """A reference to a stored version or a library template; the two never shadow each other silently."""
    if ref.startswith("library:"):
        template = load(ref.removeprefix("library:"))
        return Resolved(Prompt(template), template.name)
    if "@" in ref or str(ref).isdigit():
        name, _, which = str(ref).partition("@")
        version = store.get_version(name if which == "latest" else ref)
        return Resolved(prompt_of(version), version.label, version)
    if ref in library_names() or ref.endswith(".j2"):
        template = load(ref)
        stored = [v.label for v in store.list_versions(template.name)]
        note = (
            (
                f"exported the library template '{ref}'; stored versions of that name: {', '.join(stored)} "
                f"(name one, e.g. {stored[-1]}, to export it)"
            )
            if stored
            else None
        )
        return Resolved(Prompt(template), template.name, None, note)
    version = store.get_version(ref)
    return Resolved(prompt_of(version), version.label, version)


def export_j2(store: Store, ref: str) -> tuple[str, str | None]:
    """The template source; a stored version's adds a `bound:` block (delimiter, guardrails, values) to its front
    matter, which `workbench render` and suite files read back."""
    found = resolve(store, ref)
    source = found.prompt.template.source
    if found.version is not None:
        source = with_bound(source, found.prompt)
    return (source if source.endswith("\n") else source + "\n"), found.note


def with_bound(source: str, prompt: Prompt) -> str:
    bound = {"delimiter": prompt.delimiter, "values": prompt.variables}
    if prompt.guardrails and not prompt.guardrails.is_empty():
        bound["guardrails"] = prompt.guardrails.to_dict()
    block = yaml.safe_dump({"bound": bound}, sort_keys=False, allow_unicode=True, width=110).rstrip()
    if source.lstrip().startswith("{#---"):
        head, sep, rest = source.partition("\n---#}")
        return f"{head.rstrip()}\n{block}{sep}{rest}"
    return f"{{#---\n{block}\n---#}}\n{source}"


def export_openai(store: Store, ref: str, values: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """Without values: the chat prompt template (placeholders, the variables with their descriptions, what is
    fixed). With values: the filled messages."""
    found = resolve(store, ref)
    if values:
        return json.dumps(found.prompt.render(values), indent=2, ensure_ascii=False) + "\n", found.note
    exported = as_template(found.prompt)
    data = {
        "name": found.label,
        "type": "chat",
        "delimiter": found.prompt.delimiter,
        "messages": exported.messages,
        "variables": exported.variables,
        "fixed": exported.fixed,
    }
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", found.note


def request_body(
    store: Store,
    ref: str,
    values: dict[str, Any],
    model: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Chat Completions request body, ready to POST to `workbench serve` or any OpenAI-compatible API."""
    found = resolve(store, ref)
    settings = get_settings()
    body = {
        "model": model or f"{settings.default_model}@{settings.default_quant}",
        "messages": found.prompt.render(values),
        **DEFAULT_REQUEST_PARAMS,
        **(params or {}),
    }
    schema = found.prompt.guardrails.json_schema if found.prompt.guardrails else None
    if schema:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    return body


def curl(body: dict[str, Any], base_url: str | None = None) -> str:
    """The request as a curl command line (no key: add `-H "Authorization: Bearer $KEY"` for a remote API)."""
    url = (base_url or get_settings().engine_url).rstrip("/") + "/chat/completions"
    payload = json.dumps(body, ensure_ascii=False)
    return f"curl -s {shlex.quote(url)} -H 'Content-Type: application/json' -d {shlex.quote(payload)}"
