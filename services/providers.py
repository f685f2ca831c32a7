"""Providers for specs: local specs reach an engine through services/engines.py, remote ones their base URL.

One provider object per spec per process (its HTTP client is reused). `available_specs` is what pickers offer:
the local model under each quantization method (the running one first) and every stored remote configuration.
"""

from __future__ import annotations

import json
import threading

import quant_methods
from prompting.http_provider import HttpProvider
from prompting.providers import Provider, ProviderSpec
from services.engines import configured_status, engines
from settings import get_settings

_providers: dict[str, Provider] = {}
_lock = threading.Lock()


def provider_for(spec: ProviderSpec) -> Provider:
    key = json.dumps(spec.__dict__, sort_keys=True, default=str)
    with _lock:
        if key not in _providers:
            if spec.kind == "local":
                _providers[key] = HttpProvider(spec, lambda: engines.url_for(spec.model, spec.quant))
            else:
                _providers[key] = HttpProvider(spec)
        return _providers[key]


def spec_from(ident: str | dict) -> ProviderSpec:
    """A provider as a suite names it: an id, or a mapping with id (and config)."""
    if isinstance(ident, dict):
        return ProviderSpec.parse(ident["id"], ident.get("config"))
    return ProviderSpec.parse(ident)


def judge_for(ident: str | dict | None):
    """The `llm-rubric` judge: a function prompt -> reply on the named provider (an id, or {id, config} as in a
    suite's providers), or None."""
    if not ident:
        return None
    judge = provider_for(spec_from(ident))

    def ask(prompt: str) -> str:
        return judge.chat([{"role": "user", "content": prompt}], temperature=0, max_tokens=256).text

    return ask


def simulator_for(store, suite_default: str | dict | None = None):
    """The simulated users' providers: a case's label (a stored provider configuration of that label, else a
    provider id) wins, then the suite's `simulator`, then the local default model at the default quantization."""
    from services.specs import spec_of

    def factory(label: str | None) -> Provider:
        if label:
            stored = next((c for c in store.list_providers() if c.label == label), None)
            return provider_for(spec_of(stored) if stored else ProviderSpec.parse(label))
        settings = get_settings()
        return provider_for(
            spec_from(suite_default or f"local:{settings.default_model}@{settings.default_quant}")
        )

    return factory


def local_specs() -> list[ProviderSpec]:
    settings = get_settings()
    status = configured_status(timeout=0.5)
    running = status["card"].get("quant") if status else settings.default_quant
    methods = [running] + [m for m in quant_methods.CHOICES if m != running]
    return [ProviderSpec.parse(f"local:{settings.default_model}@{m}") for m in methods]


def available_specs(store) -> list[ProviderSpec]:
    """The local model's methods, then every stored remote configuration."""
    from services.specs import spec_of

    specs = local_specs()
    labels = {s.label for s in specs}
    for config in store.list_providers():
        if config.kind == "remote" and config.label not in labels:
            specs.append(spec_of(config))
    return specs
