"""Playground: one prompt against a provider with the decoding controls it supports — streamed output, a token
heatmap with the alternatives, a self-consistency vote, a tree-of-thoughts search, or 2–4 side by side."""

from __future__ import annotations

import html
import math

import pandas as pd
import streamlit as st

from prompting.strategies import Prompt, self_consistency, tree_of_thoughts
from prompting.templates import load
from services import versions
from services.errors import PromptingError, StoreError
from views.common import engine_status, messages_view, provider, provider_specs, state, store, version_labels

st.title(":material/tune: Playground")

specs = provider_specs()
labels = [s.label for s in specs]
spec = specs[labels.index(st.selectbox("Provider", labels, key="play_provider"))]
chosen = provider(spec)
caps = chosen.capabilities
if spec.kind == "local":
    status = engine_status()
    if status is None or status["card"]["id"] != chosen.model_id:
        st.info(
            f"No engine serves {chosen.model_id} at the configured URL yet: the first request starts one "
            "(a few seconds), or start it on the Engine page."
        )

# --- the prompt ---------------------------------------------------------------------------------------------
sources = ["Build page preview", "Stored version", "Free text"]
source = st.radio("Prompt", sources, horizontal=True, key="play_source")
messages = None
prompt_obj: Prompt | None = None
if source == "Build page preview":
    messages = st.session_state.get("build_messages")
    if not messages:
        st.info("Fill a template on the Build page first, or pick another prompt source.")
elif source == "Stored version":
    versions = version_labels()
    if versions:
        ref = st.selectbox("Version", list(versions), key="play_version")
        try:
            prompt_obj, _ = versions.resolve(store(), ref)
            messages = prompt_obj.render({})
        except (PromptingError, StoreError) as exc:
            st.error(f"{exc} — bind the variables on the Build page and save again.")
    else:
        st.info("No stored versions yet: save one on the Build page.")
else:
    text = st.text_area("Message", "Write a haiku about the sea.", key="play_text")
    messages = [{"role": "user", "content": text}]
if messages:
    with st.expander("Messages sent", expanded=False):
        messages_view(messages)

# --- decoding controls: only what the provider understands ---------------------------------------------------
with st.sidebar:
    st.header("Decoding")
    params = {
        "temperature": st.slider(
            "temperature", 0.0, 2.0, state("play_temperature", 0.7), 0.05, key="play_temperature"
        ),
        "top_p": st.slider("top_p", 0.05, 1.0, 1.0, 0.05, key="play_top_p"),
        "max_tokens": st.number_input("max tokens", 1, 4096, 128, key="play_max_tokens"),
    }
    n = st.number_input("n (samples)", 1, 16, 1, key="play_n")
    if n > 1:
        params["n"] = int(n)
    seed = st.number_input("seed (0 = random)", 0, 2**31 - 1, 0, key="play_seed")
    if seed:
        params["seed"] = int(seed)
    if caps.top_k:
        params["top_k"] = st.number_input("top_k (0 = off)", 0, 1000, 0, key="play_top_k")
        params["min_p"] = st.slider("min_p", 0.0, 1.0, 0.0, 0.01, key="play_min_p")
        params["repetition_penalty"] = st.slider("repetition penalty", 0.5, 2.0, 1.0, 0.05, key="play_rep")
    if caps.beam_search:
        beams = st.number_input("beam width (1 = off)", 1, 8, 1, key="play_beams")
        if beams > 1:
            params.update({"use_beam_search": True, "n": int(beams)})

mode = st.radio(
    "View",
    ["Stream", "Token heatmap", "Self-consistency", "Tree of thoughts", "Side by side"],
    horizontal=True,
    key="play_mode",
)
if mode == "Side by side":
    st.multiselect(
        "Compare these providers (2–4)", labels, default=labels[:2], max_selections=4, key="play_side"
    )


def heatmap_html(tokens: list[dict]) -> str:
    spans = []
    for item in tokens:
        p = math.exp(item["logprob"])
        hue = int(120 * p)  # red (unlikely) .. green (likely)
        alternatives = "&#10;".join(
            f"{html.escape(repr(t['token']))}: {math.exp(t['logprob']):.1%}" for t in item["top"]
        )
        spans.append(
            f"<span class='tok' title='p={p:.1%}&#10;{alternatives}' "
            f"style='background:hsl({hue},80%,80%)'>{html.escape(item['token'])}</span>"
        )
    return (
        "<div class='heatmap' style='line-height:2;font-family:monospace;white-space:pre-wrap'>"
        + "".join(spans)
        + "</div>"
    )


def run_stream() -> None:
    def chunks():
        for chunk in chosen.stream(messages, **params):
            if chunk.text:
                yield chunk.text

    with st.container(key="play_answer"):
        st.session_state["play_output"] = st.write_stream(chunks())


if messages and st.button("Run", type="primary", key="do_play_run"):
    try:
        if mode == "Stream":
            if params.get("use_beam_search") or params.get("n", 1) > 1:
                completion = chosen.chat(messages, **params)
                for i, text in enumerate(completion.texts):
                    st.markdown(f"**{i + 1}.** {text}")
            else:
                run_stream()
        elif mode == "Token heatmap":
            completion = chosen.chat(messages, **params, logprobs=True, top_logprobs=5)
            if not completion.logprobs or not completion.logprobs[0]:
                st.warning("This provider returned no log-probabilities.")
            else:
                st.session_state["play_heatmap"] = completion.logprobs[0]
                with st.container(key="play_heatmap_box"):
                    st.markdown(heatmap_html(completion.logprobs[0]), unsafe_allow_html=True)
                st.caption(
                    "Colour: probability of the chosen token (green likely, red unlikely); hover for the "
                    "top alternatives."
                )
        elif mode == "Self-consistency":
            template = prompt_obj.template if prompt_obj else load("self_consistency")
            use = prompt_obj or Prompt(template)
            if not template.answer_pattern:
                st.error("Self-consistency needs a template with an answer pattern (e.g. self_consistency).")
            else:
                case = {} if prompt_obj else {"question": messages[-1]["content"]}
                out = self_consistency(use, case, lambda m, p: chosen.chat(m, **p), {**params}, {})
                st.metric(
                    "Majority answer", out.answer or "(none)", f"agreement {out.detail['agreement']:.0%}"
                )
                votes = pd.DataFrame(
                    {"answer": list(out.detail["votes"]), "votes": list(out.detail["votes"].values())}
                )
                if not votes.empty:
                    st.bar_chart(votes.set_index("answer"))
                for answer, group in pd.DataFrame(out.detail["samples"]).groupby("answer", dropna=False):
                    with st.expander(f"{answer} — {len(group)} sample(s)"):
                        for text in group["text"]:
                            st.text(text)
        elif mode == "Tree of thoughts":
            template = load("tree_of_thoughts")
            problem = messages[-1]["content"] if not prompt_obj else prompt_obj.variables.get("problem", "")
            out = tree_of_thoughts(
                Prompt(template),
                {"problem": problem},
                lambda m, p: chosen.chat(m, **p),
                {**params, "temperature": 0.0},
                {},
            )
            st.metric("Answer", out.answer or "(none found)")
            dot = ["digraph tree { node [shape=box, style=rounded];"]
            for node in out.detail["tree"]:
                label = (node.get("step") or "root").replace('"', "'")[:40]
                value = "" if node["value"] is None else f"\\nvalue {node['value']:.1f}"
                colour = "palegreen" if node["kept"] else "mistyrose"
                dot.append(f'n{node["id"]} [label="{label}{value}", style="filled", fillcolor="{colour}"];')
                if node["parent"] is not None:
                    dot.append(f"n{node['parent']} -> n{node['id']};")
            st.graphviz_chart("\n".join(dot) + "}")
        else:
            picks = st.session_state.get("play_side") or labels[:2]
            columns = st.columns(len(picks))
            for column, label in zip(columns, picks, strict=True):
                other = provider(specs[labels.index(label)])
                column.markdown(f"**{label}**")
                column.write(
                    other.chat(
                        messages,
                        **{
                            k: v
                            for k, v in params.items()
                            if k in ("temperature", "top_p", "max_tokens", "seed")
                        },
                    ).text
                )
    except PromptingError as exc:
        st.error(str(exc))
