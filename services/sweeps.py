"""Several variants at once: the section ablation (a version and each variant that drops one part, as one run)
and the quantization sweep (one suite on the local model under several methods, one run each, each measuring
its engine when it completes). Their statistics are services/compare.py's."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prompting.providers import ProviderSpec
from prompting.runner import ablation_variants
from services.providers import provider_for
from services.runs import RunPlan, overall, submit
from services.specs import prompt_of, save_provider, spec_of
from store import Store


def ablation_submit(
    store: Store, suite: str | int, version_id: int, spec: ProviderSpec, *, params: dict | None = None
) -> str:
    """Queue one run over the full version and every variant that drops one part; returns the run id. The
    variants are stored as children of the version (not offered as versions of their own)."""
    suite_id = store.get_suite(suite).id
    base = store.get_version(version_id)
    variant_of: dict[int, str] = {}
    for label, prompt in ablation_variants(prompt_of(base)):
        version = (
            base
            if label == "full"
            else store.save_version(
                f"{base.label} {label}",
                base.source,
                variables=prompt.variables,
                delimiter=prompt.delimiter,
                guardrails=prompt.guardrails.to_dict() if prompt.guardrails else None,
                options={"drop_sections": list(prompt.drop_sections)},
                note=f"ablation of {base.label}: {label}",
                library_ref=base.library_ref,
                parent_id=base.id,
            )
        )
        variant_of[version.id] = label
    config = save_provider(store, spec)
    plan = RunPlan(
        suite_id, list(variant_of), [config.id], params=params or {}, description=f"ablation of {base.label}"
    )
    run = submit(
        store, plan, kind="ablation", parent=version_id, variants={str(k): v for k, v in variant_of.items()}
    )
    return run.id


def sweep_submit(
    store: Store,
    suite: str | int,
    version_id: int,
    model: str,
    methods: list[str],
    *,
    params: dict | None = None,
    concurrency: int = 4,
) -> str:
    """Queue the same suite on the local model under each method (each engine started on demand); returns the
    sweep's id. Each run measures its engine when it completes (perplexity, weights, speed)."""
    suite_id = store.get_suite(suite).id
    sweep = f"sweep-{uuid.uuid4().hex[:8]}"
    for method in methods:
        config = save_provider(store, ProviderSpec.parse(f"local:{model}@{method}"))
        plan = RunPlan(
            suite_id, [version_id], [config.id], params=params or {}, description=f"quant sweep: {method}"
        )
        submit(store, plan, concurrency=concurrency, kind="sweep", sweep=sweep, method=method)
    return sweep


def sweep_ids(store: Store) -> list[str]:
    """Every sweep, newest first."""
    return list(dict.fromkeys(s for r in store.list_runs() if (s := (r.options or {}).get("sweep"))))


def sweep_runs(store: Store, sweep: str) -> list:
    return [r for r in store.list_runs() if (r.options or {}).get("sweep") == sweep][::-1]


def sweep_measures(store: Store, run) -> dict[str, Any]:
    config = store.get_provider(run.provider_ids[0])
    provider = provider_for(spec_of(config))
    card = provider.model_card()
    total = overall(store, run.id)
    return {
        "ppl": provider.perplexity(perplexity_text()),
        "weight_mb": card.get("weight_bytes", 0) / 1e6,
        "bits_per_param": card.get("bits_per_param"),
        "tokens_per_s": total.tokens_per_s,
    }


def sweep_result(store: Store, sweep: str) -> list[dict[str, Any]]:
    """One row per method: its run's score and pass rate, and the engine measures (once the run completed)."""
    rows = []
    for run in sweep_runs(store, sweep):
        total, options = overall(store, run.id), run.options or {}
        rows.append(
            {
                "method": options.get("method"),
                "run_id": run.id,
                "status": run.status,
                "score": total.mean_score,
                "pass_rate": total.pass_rate,
                "errors": total.errors,
                **(options.get("measures") or {}),
            }
        )
    return rows


def perplexity_text() -> str:
    path = Path(__file__).resolve().parent.parent / "engine" / "data" / "perplexity.txt"
    return path.read_text(encoding="utf-8")
