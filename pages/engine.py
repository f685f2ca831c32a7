"""Engine: the configured engine (start it here), every running engine with Stop, and the memory arithmetic —
sizes only from what engines publish in /v1/models or what the last `make bench` measured, in human units."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

import quant_methods
from services.engines import bench_report, engines, kv_plan, parameter_count, published_cards
from services.errors import PromptingError
from settings import get_settings
from ui.common import engine_status

st.title(":material/memory: Engine")
settings = get_settings()


def human(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def configured() -> None:
    status = engine_status()
    if status:
        card, metrics = status["card"], status["metrics"]
        st.success(f"Serving **{card['id']}** at {status['url']}", icon=":material/check_circle:")
        cols = st.columns(5)
        cols[0].metric("Method", card.get("quant", "?"))
        cols[1].metric("Weights (linear layers)", human(card.get("weight_bytes")))
        cols[2].metric("Bits / parameter", f"{card.get('bits_per_param', 0):.2f}")
        cols[3].metric("Running sequences", metrics.get("running_sequences", 0))
        cols[4].metric("Queued requests", metrics.get("queued_requests", 0))
        st.caption(
            f"{metrics.get('requests_total', 0):,} requests · {metrics.get('prompt_tokens_total', 0):,} tokens in · "
            f"{metrics.get('completion_tokens_total', 0):,} tokens out · last batch {metrics.get('batch_size', 0)}"
        )
        return
    st.warning(f"No engine answers at {settings.engine_url}.", icon=":material/warning:")
    method = st.selectbox("Quantization method", quant_methods.CHOICES, key="engine_start_method")
    if st.button("Start the engine", type="primary", icon=":material/play_arrow:"):
        with st.spinner("Loading the model…"):
            try:
                engines.start_configured(method)
            except PromptingError as exc:
                st.error(str(exc))
            else:
                time.sleep(0.1)
                st.rerun()


@st.fragment(run_every=15.0)
def engines_list() -> None:
    """Every engine this machine runs for the workbench: the configured one and those started on demand."""
    engines.reap()
    rows = engines.listing()
    st.subheader("Running engines")
    st.caption(
        f"On-demand engines stop after {settings.engine_idle_s:,.0f} s idle (WORKBENCH_ENGINE_IDLE_S); at most "
        f"{settings.max_engines} run at once (WORKBENCH_MAX_ENGINES), starting one more stops the least "
        "recently used."
    )
    if not rows:
        st.caption("None.")
    for row in rows:
        c1, c2, c3, c4, c5 = st.columns([3, 3, 2, 2, 1.5])
        c1.markdown(f"**{row.model_id}**")
        c2.caption(f"{row.url}" + ("" if row.on_demand else " (configured)"))
        c3.caption("–" if row.rss_mb is None else f"{human(row.rss_mb * 1e6)} resident")
        c4.caption("–" if row.idle_s is None else f"idle {row.idle_s:,.0f} s")
        if row.on_demand and c5.button("Stop", key=f"do_stop_{row.model_id}", icon=":material/stop_circle:"):
            engines.stop(row.model_id)
            st.rerun()


def sizes(cards: list[dict]) -> pd.DataFrame:
    """Per method: published by a running engine, else measured by the last bench."""
    rows = {}
    report = bench_report("engine") or {}
    for r in report.get("results", []):
        if r.get("system") == "ours":
            rows[r["method"]] = {
                "method": r["method"],
                "weights": r.get("weight_bytes"),
                "bits": r.get("bits_per_param"),
                "perplexity": r.get("ppl"),
                "decode tok/s": r.get("decode_tok_s"),
                "source": "last make bench",
            }
    for card in cards:
        method = card.get("quant") or card["id"].split("@")[-1]
        rows[method] = {
            **rows.get(method, {"perplexity": None, "decode tok/s": None}),
            "method": method,
            "weights": card.get("weight_bytes"),
            "bits": card.get("bits_per_param"),
            "kv": card.get("kv_bytes_per_token"),
            "source": "running engine",
        }
    return pd.DataFrame(rows.values())


def memory() -> None:
    st.subheader("Memory")
    cards = published_cards()  # one /v1/models request per running engine, for both sections
    frame = sizes(cards)
    if frame.empty:
        st.info(
            "No engine runs and no bench report exists: start an engine above, or run `make bench` to measure "
            "every method."
        )
        return
    frame["weights MB"] = frame["weights"] / 1e6
    shown = frame[["method", "weights", "bits", "perplexity", "decode tok/s", "source"]].copy()
    shown["weights"] = shown["weights"].map(human)
    measured = [c for c in ("perplexity", "decode tok/s") if shown[c].notna().any()]
    shown = shown.drop(columns=[c for c in ("perplexity", "decode tok/s") if c not in measured])
    for column, spec in (("perplexity", ".2f"), ("decode tok/s", ".1f")):
        if column in measured:  # a method the bench did not measure shows a dash, not "None"
            shown[column] = shown[column].map(lambda v, spec=spec: "–" if pd.isna(v) else format(v, spec))
    if not measured:
        st.caption("Perplexity and decode speed per method come from `make bench` (none has run here yet).")
    st.dataframe(
        shown,
        hide_index=True,
        column_config={"bits": st.column_config.NumberColumn("bits / parameter", format="%.2f")},
    )
    st.caption(
        "Weights of the linear layers and the output head, scales included (what the engine publishes in "
        "/v1/models; the bench measures the same)."
    )
    st.altair_chart(
        alt.Chart(frame.dropna(subset=["weights MB"]))
        .mark_bar()
        .encode(
            x=alt.X("weights MB:Q", title="weights (MB)"),
            y=alt.Y("method:N", title="quantization method", sort="x"),
            tooltip=[
                "method",
                alt.Tooltip("weights MB:Q", format=".1f"),
                alt.Tooltip("bits:Q", format=".2f"),
            ],
        ),
        width="stretch",
    )
    kv_cache(cards)


def kv_cache(cards: list[dict]) -> None:
    """The KV cache arithmetic from the bytes per token a running engine publishes for each KV dtype."""
    card = next((c for c in cards if c.get("kv_bytes_per_token_by_dtype")), None)
    if card is None:
        return
    st.markdown(
        "**KV cache** — paged: a sequence holds whole blocks of its own tokens only; full blocks of a prefix "
        "that sequences share (a suite's system prompt and examples) are held once."
    )
    tokens, batch, shared, block = kv_inputs(card)
    pool = card.get("kv_cache_bytes")
    per_dtype = card["kv_bytes_per_token_by_dtype"].items()
    plans = [kv_plan(dtype, per_token, block, tokens, batch, shared) for dtype, per_token in per_dtype]
    # what the running pool holds: sharing counts only where the engine caches prefixes
    reused = shared if card.get("prefix_caching") else 0
    fits = [
        kv_plan(dtype, per_token, block, tokens, batch, reused, pool).fits for dtype, per_token in per_dtype
    ]
    table = pd.DataFrame(
        [
            {
                "KV dtype": p.kv_dtype + (" (running)" if p.kv_dtype == card.get("kv_dtype") else ""),
                "per token": human(p.bytes_per_token),
                "without prefix sharing": human(p.bytes_unshared),
                "with prefix sharing": human(p.bytes_shared),
                f"sequences that fit {human(pool)}": fit,
            }
            for p, fit in zip(plans, fits, strict=True)
        ]
    )
    st.dataframe(table, hide_index=True)
    kv_chart(plans)
    st.caption(
        f"Bytes per token as the engine publishes them in /v1/models; the running engine uses "
        f"{card.get('kv_dtype')} KV in blocks of {card.get('kv_block_size')} tokens, a pool of "
        f"{card.get('kv_blocks', 0):,} blocks ({human(pool)}), prefix caching "
        f"{'on' if card.get('prefix_caching') else 'off'} (`workbench serve --kv-dtype --kv-block-size "
        "--kv-memory-mb --no-prefix-cache`)."
    )


def kv_inputs(card: dict) -> tuple[int, int, int, int]:
    """Tokens per sequence, sequences at once, shared prefix and block size, as the reader sets them."""
    c1, c2, c3, c4 = st.columns(4)
    tokens = c1.number_input(
        "Tokens per sequence",
        1,
        131072,
        1030,
        step=64,
        key="engine_tokens",
        help="Prompt and answer together.",
    )
    batch = c2.number_input("Sequences at once", 1, 256, 16, key="engine_batch")
    shared = c3.number_input(
        "Shared prefix (tokens)",
        0,
        131072,
        1000,
        step=64,
        key="engine_shared",
        help="Tokens every sequence starts with: the part of a suite's prompt before the case.",
    )
    offered = [16, 32, 64]
    running = card.get("kv_block_size", 16)
    block = c4.selectbox(
        "Block size", offered, index=offered.index(running) if running in offered else 0, key="engine_block"
    )
    return int(tokens), int(batch), int(shared), int(block)


def kv_chart(plans: list) -> None:
    chart = pd.DataFrame(
        [
            {"KV dtype": p.kv_dtype, "prefix": label, "MB": value / 1e6}
            for p in plans
            for label, value in (("not shared", p.bytes_unshared), ("shared", p.bytes_shared))
        ]
    )
    st.altair_chart(
        alt.Chart(chart)
        .mark_bar()
        .encode(
            x=alt.X("MB:Q", title="KV cache (MB)"),
            y=alt.Y("KV dtype:N", title=None, sort=[p.kv_dtype for p in plans]),
            yOffset="prefix:N",
            color=alt.Color("prefix:N", title="prefix"),
            tooltip=["KV dtype", "prefix", alt.Tooltip("MB:Q", format=",.1f")],
        ),
        width="stretch",
    )


def training() -> None:
    total = parameter_count(settings.default_model)
    if total is None:
        return
    st.markdown(
        f"Training estimate for {total / 1e6:,.1f} M parameters (fp32, AdamW): weights 4 + gradients 4 + two "
        f"Adam moments 8 = 16 bytes per parameter = **{human(total * 16)}**, before activations."
    )


configured()
engines_list()
memory()
training()
