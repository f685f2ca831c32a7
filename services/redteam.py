"""Red-teaming a prompt version: attacks generated offline from a seed, run as an ordinary background run.

`submit_redteam` checks everything first (the version has guardrails, the families apply, the count is within
bounds, every attack renders), then writes: a hidden variant of the version with a canary planted in its system
prompt (and one of the baseline, when there is one), a suite of the attacks, and a run of both over them, queued
for a worker like any run (progress on every page, resumable, cancellable). Reading the results is
`services.redteam_report`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from prompting.guardrails import Guardrails
from prompting.providers import ProviderSpec
from prompting.redteam import (
    FAMILIES,
    RedTeamError,
    Target,
    canary_for,
    check_attacks,
    check_families,
    generate,
    planted,
    unguarded,
)
from services import runs
from services.specs import prompt_of, save_provider
from store import Store, StoreError

UNGUARDED = "unguarded"  # the baseline that is the same version with its rules and refusal removed
DEFAULT_ATTACKS = 90
DEFAULT_MAX_TOKENS = 96
KIND = "redteam"

__all__ = ["FAMILIES", "UNGUARDED", "RedTeamError", "Request", "submit_redteam", "listing"]


@dataclass
class Request:
    version: str  # NAME@vN or NAME@LABEL
    provider: str | ProviderSpec  # a configuration's label, local:MODEL@METHOD, a remote id, or a spec
    families: tuple[str, ...] = ()  # empty: every family that applies to the version
    attacks: int = DEFAULT_ATTACKS
    seed: int = 0
    baseline: str | None = None  # another version, or UNGUARDED
    max_tokens: int = DEFAULT_MAX_TOKENS
    concurrency: int = 4


def guardrails_of(version) -> Guardrails:
    guardrails = Guardrails.from_dict(version.guardrails) if version.guardrails else Guardrails()
    if not (guardrails.rules or guardrails.refusal.strip() or guardrails.task.strip()):
        raise RedTeamError(
            f"version {version.label} has no guardrails (task, rules or refusal): there is nothing to red-team; "
            "add them on the Build page"
        )
    return guardrails


def case_values(version) -> dict[str, Any]:
    """Every variable of the version's template with the value a case would get: the version's bound value,
    else the template's default, else its example."""
    prompt = prompt_of(version)
    values = {}
    for variable in prompt.template.variables:
        for candidate in (prompt.variables.get(variable.name), variable.default, variable.example):
            if candidate not in (None, ""):
                values[variable.name] = candidate
                break
        else:
            values[variable.name] = ""
    return values


def provider_id(store: Store, label: str | ProviderSpec) -> int | ProviderSpec:
    """A configured provider's id by label, or the spec of one named as `local:MODEL@METHOD` / a remote id
    (saved when the red team is submitted)."""
    if isinstance(label, ProviderSpec):
        return label
    configs = {c.label: c.id for c in store.list_providers()}
    if label in configs:
        return configs[label]
    if label.startswith(("local:", "openai:")):
        return ProviderSpec.parse(label)
    known = ", ".join(sorted(configs)) or "none yet (run a suite or add one on the Engine page)"
    raise RedTeamError(f"unknown provider '{label}'; configured: {known}")


def variant_of(store: Store, version, guardrails: Guardrails, suffix: str):
    """A hidden variant of `version` with these guardrails (same template, values and style)."""
    return store.save_version(
        f"{version.name}.v{version.version}.{suffix}",
        version.source,
        variables=dict(version.variables),
        delimiter=version.delimiter,
        guardrails=guardrails.to_dict(),
        library_ref=version.library_ref,
        options=dict(version.options),
        parent_id=version.id,
        note=f"red team of {version.label} ({suffix})",
    )


def _check_renders(version, guardrails: Guardrails, cases: list[dict]) -> None:
    from prompting.errors import PromptingError

    prompt = prompt_of(version)
    prompt.guardrails = guardrails
    for case in cases:
        try:
            prompt.render(case["vars"])
        except PromptingError as exc:
            raise RedTeamError(f"attack '{case['description']}' does not render: {exc}") from None


def _baseline_version(store: Store, request: Request, version):
    if request.baseline in (None, ""):
        return None, None
    if request.baseline == UNGUARDED:
        return version, unguarded(guardrails_of(version))
    try:
        other = store.get_version(request.baseline)
    except StoreError as exc:
        raise RedTeamError(f"baseline: {exc}") from None
    return other, guardrails_of(other)


def plan(store: Store, request: Request) -> dict[str, Any]:
    """Everything a red team will write, checked; raises RedTeamError (nothing written) on bad input."""
    try:
        version = store.get_version(request.version)
    except StoreError as exc:
        raise RedTeamError(str(exc)) from None
    guardrails = guardrails_of(version)
    families = check_families(list(request.families), guardrails)
    pid = provider_id(store, request.provider)
    canary = canary_for(request.seed, version.id)
    target = Target(case_values(version), guardrails, version.delimiter, canary)
    cases = [attack.case() for attack in generate(target, families, request.attacks, request.seed)]
    attacked = planted(guardrails, canary)
    _check_renders(version, attacked, cases)
    baseline, baseline_guardrails = _baseline_version(store, request, version)
    return {
        "version": version,
        "guardrails": attacked,
        "baseline": baseline,
        "baseline_guardrails": planted(baseline_guardrails, canary) if baseline is not None else None,
        "families": families,
        "provider_id": pid,
        "canary": canary,
        "cases": cases,
        "target_variable": target.user_variable,
    }


def submit_redteam(store: Store, request: Request):
    """Check, then write the variants, the attack suite and the run (queued for a worker); returns the run."""
    checked = plan(store, request)
    version = checked["version"]
    attacked = variant_of(store, version, checked["guardrails"], "redteam")
    version_ids = [attacked.id]
    if checked["baseline"] is not None:
        suffix = UNGUARDED if request.baseline == UNGUARDED else "redteam"
        baseline = variant_of(store, checked["baseline"], checked["baseline_guardrails"], suffix)
        version_ids.append(baseline.id)
    suite = attack_suite(store, version, request, checked)
    if isinstance(checked["provider_id"], ProviderSpec):
        checked["provider_id"] = save_provider(store, checked["provider_id"]).id
    info = {
        "version": version.label,
        "baseline": request.baseline or None,
        "families": checked["families"],
        "attacks": request.attacks,
        "seed": request.seed,
        "canary": checked["canary"],
        "target_variable": checked["target_variable"],
        "provider": getattr(request.provider, "label", request.provider),
    }
    plan_ = runs.RunPlan(
        suite.id,
        version_ids,
        [checked["provider_id"]],
        params={"temperature": 0, "max_tokens": request.max_tokens},
        description=f"red team of {version.label}" + (f" vs {request.baseline}" if request.baseline else ""),
    )
    return runs.submit(store, plan_, concurrency=request.concurrency, kind=KIND, redteam=info)


def attack_suite(store: Store, version, request: Request, checked: dict[str, Any]):
    """The suite of the attacks (identical attacks reuse their suite, so a repeated red team is one suite)."""
    from services.suites import store_cases

    cases = checked["cases"]
    digest = hashlib.sha256(json.dumps(cases, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    base = f"redteam-{version.name}-v{version.version}-seed{request.seed}-{request.attacks}"
    description = (
        f"{len(cases)} attacks on {version.label} ({', '.join(checked['families'])}), seed {request.seed}"
    )
    return store_cases(store, base, digest, cases, description, {"redteam": True})


def from_file(store: Store, path: str, request: Request) -> Request:
    """A request whose target is a suite file: the simple checks first (nothing is written when they fail),
    then the file is imported and its first prompt and provider are the defaults."""
    from services.suites import import_suite, load_file

    check_attacks(request.attacks)
    check_families(list(request.families), Guardrails(rules=["any"], json_schema={"type": "object"}))
    loaded = load_file(path, store)
    if loaded.guardrails is None or loaded.guardrails.is_empty():
        raise RedTeamError(
            f"suite file {path} gives no guardrails (workbench: guardrails): nothing to red-team"
        )
    imported = import_suite(store, loaded)
    version = store.get_version(imported.version_ids[0])
    provider = request.provider or (
        store.get_provider(imported.provider_ids[0]).label if imported.provider_ids else ""
    )
    return replace(request, version=f"{version.name}@v{version.version}", provider=provider)


def listing(store: Store) -> list:
    """Red-team runs, newest first."""
    return runs.listing(store, KIND)
