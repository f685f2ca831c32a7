"""Engine: is the local server up (start it here), which model and method it runs, the memory arithmetic
(weights per method, KV cache, a training estimate) and the measured perplexity/throughput table."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

import quant_methods
from services.engines import engines
from services.errors import PromptingError
from settings import get_settings
from views.common import engine_status

st.title(":material/memory: Engine")
settings = get_settings()
status = engine_status()

if status:
    card, metrics = status["card"], status["metrics"]
    st.success(f"Serving **{card['id']}** at {status['url']}")
    cols = st.columns(5)
    cols[0].metric("Method", card.get("quant", "?"))
    cols[1].metric("Weights (linear)", f"{card.get('weight_bytes', 0) / 1e6:.1f} MB")
    cols[2].metric("Bits / parameter", f"{card.get('bits_per_param', 0):.2f}")
    cols[3].metric("Running sequences", metrics.get("running_sequences", 0))
    cols[4].metric("Queued requests", metrics.get("queued_requests", 0))
    st.caption(
        f"requests {metrics.get('requests_total', 0)} · tokens in {metrics.get('prompt_tokens_total', 0)} · "
        f"tokens out {metrics.get('completion_tokens_total', 0)} · last batch {metrics.get('batch_size', 0)}"
    )
else:
    st.warning(f"No engine answers at {settings.engine_url}.")
    method = st.selectbox("Quantization method", quant_methods.CHOICES, key="engine_start_method")
    if st.button("Start the engine", type="primary"):
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
    limit = get_settings()
    st.subheader("Running engines")
    st.caption(f"On-demand engines stop after {limit.engine_idle_s:.0f} s idle (WORKBENCH_ENGINE_IDLE_S); at most "
               f"{limit.max_engines} run at once (WORKBENCH_MAX_ENGINES), starting one more stops the least "
               "recently used.")  # fmt: skip
    if not rows:
        st.caption("None.")
    for row in rows:
        c1, c2, c3, c4, c5 = st.columns([3, 3, 2, 2, 1])
        c1.markdown(f"**{row.model_id}**")
        c2.caption(f"{row.url}" + ("" if row.on_demand else " (configured)"))
        c3.caption("–" if row.rss_mb is None else f"{row.rss_mb:,.0f} MB resident")
        c4.caption("–" if row.idle_s is None else f"idle {row.idle_s:,.0f} s")
        if row.on_demand and c5.button("Stop", key=f"do_stop_{row.model_id}", icon=":material/stop_circle:"):
            engines.stop(row.model_id)
            st.rerun()


engines_list()

st.subheader("Memory")
config_path = settings.models_dir / settings.default_model / "config.json"
if not config_path.is_file():
    st.info("Fetch the default model first (`make setup`) to see its memory arithmetic.")
    st.stop()
config = json.loads(config_path.read_text())
layers, hidden, heads = config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]
kv_heads = config.get("num_key_value_heads", heads)
head_dim = config.get("head_dim") or hidden // heads
inter, vocab = config["intermediate_size"], config["vocab_size"]
linear_params = layers * (
    hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden + 3 * hidden * inter
)
embed_params = vocab * hidden
total_params = (
    linear_params + embed_params * (1 if config.get("tie_word_embeddings") else 2) + hidden * (2 * layers + 1)
)

# Nominal bits per weight of each method's storage (scales included); the bench reports measured values.
BITS = {
    "none": 32,
    "bf16": 16,
    "int8": 8 + 16 / hidden,
    "int4": 4 + 32 / 32,
    "int4-g64": 4 + 32 / 64,
    "int4-g128": 4 + 32 / 128,
    "nf4": 4 + 8 / 64 + 32 / (64 * 256),
    "llm_int8": 8 + 32 / hidden,
    "smoothquant": 8 + 64 / hidden,
}
rows = [
    {
        "method": m,
        "bits/weight": round(b, 3),
        "linear weights MB": linear_params * b / 8 / 1e6,
        "+ output head MB": embed_params
        * (8 if m in ("int4", "int4-g64", "int4-g128", "nf4") else b)
        / 8
        / 1e6,
    }
    for m, b in BITS.items()
]
frame = pd.DataFrame(rows)
st.markdown(
    f"**{total_params / 1e6:.1f} M parameters** ({linear_params / 1e6:.1f} M in the blocks' linears, "
    f"{embed_params / 1e6:.1f} M in the tied embedding/head). Weights = parameters × bits / 8."
)
st.dataframe(
    frame.style.format({"linear weights MB": "{:.1f}", "+ output head MB": "{:.1f}"}), hide_index=True
)
st.bar_chart(frame.set_index("method")[["linear weights MB", "+ output head MB"]], stack=True)

kv_per_token = 2 * layers * kv_heads * head_dim * 4
c1, c2 = st.columns(2)
context = c1.number_input(
    "Context length (tokens)", 1, config.get("max_position_embeddings", 8192), 2048, step=256
)
batch = c2.number_input("Batch (sequences)", 1, 256, 16)
st.markdown(
    f"KV cache: 2 (K and V) × {layers} layers × {kv_heads} KV heads × {head_dim} dims × 4 bytes (fp32) = "
    f"**{kv_per_token:,} bytes per token**; for {context:,} tokens × {batch} sequences: "
    f"**{kv_per_token * context * batch / 1e9:.2f} GB**."
)
train = total_params * (4 + 4 + 8)
st.markdown(
    f"Training estimate (fp32, AdamW): weights 4 + gradients 4 + two Adam moments 8 = 16 bytes per parameter "
    f"= **{train / 1e9:.2f} GB**, before activations."
)

st.subheader("Measured perplexity and throughput")
report_path = settings.home_dir / "bench" / "engine.json"
if report_path.is_file():
    report = json.loads(report_path.read_text())
    table = pd.DataFrame(report["results"])[
        [
            "system",
            "method",
            "decode_tok_s",
            "prefill_tok_s",
            "ppl",
            "ppl_delta_pct",
            "weight_bytes",
            "bits_per_param",
            "peak_rss_bytes",
        ]
    ]
    st.caption(f"From the last `make bench` ({report['threads']} threads).")
    st.dataframe(table, hide_index=True)
    st.bar_chart(table.set_index(table["system"] + " " + table["method"])["decode_tok_s"])
else:
    st.info("Run `make bench` to measure every method's perplexity and speed here.")
