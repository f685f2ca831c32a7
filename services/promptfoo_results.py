"""promptfoo's own output (`promptfoo eval -o results.json`) imported as a run, so it can be compared with ours:
its tests become a suite (cases match ours by description and variables), its prompts versions, its providers
configurations, and every result a stored cell with its output, verdict, score, latency and tokens."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prompting.suites import chat_messages, messages_source
from services.suites import store_cases
from store import Store, StoreError


def is_promptfoo_output(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "evalId" in data and isinstance(data.get("results"), dict)


def _cases(results: list[dict], defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """One case per test, its variables without those promptfoo merged in from defaultTest."""
    by_index: dict[int, dict] = {}
    for r in results:
        test = r.get("testCase") or {}
        own = {k: v for k, v in (test.get("vars") or {}).items() if k not in defaults or defaults[k] != v}
        by_index.setdefault(
            r.get("testIdx", len(by_index)),
            {
                "description": test.get("description") or "",
                "vars": own,
                "assertions": [a for a in test.get("assert") or [] if isinstance(a, dict)],
                "threshold": test.get("threshold"),
                "tags": [],
            },
        )
    return [by_index[i] for i in sorted(by_index)]


def _versions(store: Store, results: list[dict], eval_id: str) -> dict[int, int]:
    out = {}
    for r in results:
        index = r.get("promptIdx", 0)
        if index in out:
            continue
        text = (r.get("prompt") or {}).get("label") or (r.get("prompt") or {}).get("raw") or ""
        chat = chat_messages(text)
        source = messages_source(chat) if chat else text
        out[index] = store.save_version(
            f"promptfoo-{eval_id}-prompt{index + 1}", source, note="imported from promptfoo"
        ).id
    return out


def _providers(store: Store, results: list[dict]) -> dict[str, int]:
    out = {}
    for r in results:
        ident = (r.get("provider") or {}).get("id") or "unknown"
        if ident not in out:
            model = ident.split(":", 2)[-1]
            out[ident] = store.upsert_provider(f"promptfoo:{ident}", "remote", model, base_url=None).id
    return out


def _row(
    r: dict, run_id: str, case_id: int, version_id: int, provider_id: int, repeat: int
) -> dict[str, Any]:
    response = r.get("response") or {}
    usage = r.get("tokenUsage") or response.get("tokenUsage") or {}
    # failureReason 1 is a failed assertion (a verdict), 2 an error (no verdict); `error` carries either's text
    failed_assertion = r.get("failureReason") == 1
    error = None if failed_assertion else (r.get("error") or response.get("error"))
    raw = (r.get("prompt") or {}).get("raw") or ""
    messages = chat_messages(raw) or [{"role": "user", "content": raw}]
    return {
        "run_id": run_id,
        "case_id": case_id,
        "version_id": version_id,
        "provider_id": provider_id,
        "repeat_index": repeat,
        "messages": messages,
        "output": None if error else str(response.get("output", "")),
        "error": str(error) if error else None,
        "passed": None if error else bool(r.get("success")),
        "score": None if error else float(r.get("score") or 0.0),
        "latency_ms": float(r.get("latencyMs") or 0.0),
        "tokens_in": int(usage.get("prompt") or 0),
        "tokens_out": int(usage.get("completion") or 0),
        "cost": float(r.get("cost") or 0.0),
    }


def import_results(store: Store, path: Path, name: str | None = None) -> str:
    """Store a promptfoo eval output as a completed run; returns its id."""
    data = json.loads(path.read_text(encoding="utf-8"))
    eval_id = str(data.get("evalId") or "eval")[:24]
    results = (data.get("results") or {}).get("results") or []
    if not results:
        raise StoreError(f"{path.name}: a promptfoo output with no results")
    cases = _cases(results, ((data.get("config") or {}).get("defaultTest") or {}).get("vars") or {})
    digest = hashlib.sha256(json.dumps(cases, sort_keys=True, default=str).encode()).hexdigest()
    suite = store_cases(store, name or f"promptfoo-{eval_id}", digest, cases, "imported from promptfoo", {})
    case_ids = [c.id for c in store.suite_cases(suite.id)]
    versions, providers = _versions(store, results, eval_id), _providers(store, results)
    run = store.create_run(
        suite_id=suite.id,
        version_ids=sorted(set(versions.values())),
        provider_ids=sorted(set(providers.values())),
        status="completed",
        description=f"promptfoo {eval_id} ({path.name})",
        options={"kind": "import", "source": "promptfoo", "eval_id": eval_id},
    )
    seen: dict[tuple, int] = {}
    for r in results:
        key = (r.get("testIdx", 0), r.get("promptIdx", 0), (r.get("provider") or {}).get("id") or "unknown")
        repeat = seen[key] = seen.get(key, -1) + 1
        store.save_result(_row(r, run.id, case_ids[key[0]], versions[key[1]], providers[key[2]], repeat), [])
    store.set_run_status(run.id, "completed")
    return run.id
