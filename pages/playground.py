"""Playground: one prompt against a provider with the decoding controls it supports — streamed output, a token
heatmap of whole characters, a self-consistency vote, a tree-of-thoughts search, or 2–4 providers side by side;
tokens, latency and finish reason under every answer."""

from __future__ import annotations

import json

import streamlit as st

from prompting.strategies import Prompt
from services import techniques
from services import versions as versions_service
from services.errors import PromptingError, StoreError
from ui.common import engine_status, messages_view, provider, provider_specs, store, version_labels
from ui.techniques import heatmap_html, self_consistency_view, tree_view, usage_caption

st.title(":material/tune: Playground")

specs = provider_specs()
labels = [s.label for s in specs]
spec = specs[labels.index(st.selectbox("Provider", labels, key="play_provider"))]
chosen = provider(spec)
caps = chosen.capabilities
if spec.kind == "local":
    status = engine_status(timeout=0.5)
    if status is None or status["card"]["id"] != chosen.model_id:
        st.info(
            f"No engine serves {chosen.model_id} at the configured URL yet: the first request starts one "
            "(a few seconds), or start it on the Engine page.",
            icon=":material/info:",
        )


def prompt_source() -> tuple[list[dict] | None, Prompt | None]:
    source = st.radio(
        "Prompt", ["Build page preview", "Stored version", "Free text"], horizontal=True, key="play_source"
    )
    if source == "Build page preview":
        messages = st.session_state.get("build_messages")
        if not messages:
            st.info("Fill a template on the Build page first, or pick another prompt source.")
        return messages, None
    if source == "Stored version":
        versions = version_labels()
        if not versions:
            st.info("No stored versions yet: save one on the Build page.")
            return None, None
        labels_ = list(versions)
        newest = versions_service.newest_label(store())
        ref = st.selectbox(
            "Version", labels_, index=labels_.index(newest) if newest in labels_ else 0, key="play_version"
        )
        try:
            prompt, _ = versions_service.resolve(store(), ref)
            return prompt.render({}), prompt
        except (PromptingError, StoreError) as exc:
            st.error(f"{exc} — bind the variables on the Build page and save again.")
            return None, None
    text = st.text_area("Message", "Write a haiku about the sea.", key="play_text")
    return ([{"role": "user", "content": text}] if text.strip() else None), None


def decoding() -> dict:
    with st.sidebar:
        st.header("Decoding")
        params = {
            "temperature": st.slider("temperature", 0.0, 2.0, 0.7, 0.05, key="play_temperature"),
            "top_p": st.slider("top_p", 0.05, 1.0, 1.0, 0.05, key="play_top_p"),
            "max_tokens": st.number_input(
                "max tokens",
                0,
                4096,
                0,
                key="play_max_tokens",
                help="0: the max tokens the technique's template declares (its front "
                "matter), else the provider's default",
            ),
        }
        if not params["max_tokens"]:
            del params["max_tokens"]
        n = st.number_input("n (samples)", 1, 16, 1, key="play_n")
        if n > 1:
            params["n"] = int(n)
        seed = st.number_input("seed (0 = random)", 0, 2**31 - 1, 0, key="play_seed")
        if seed:
            params["seed"] = int(seed)
        if caps.top_k:
            params["top_k"] = st.number_input("top_k (0 = off)", 0, 1000, 0, key="play_top_k")
            params["min_p"] = st.slider("min_p", 0.0, 1.0, 0.0, 0.01, key="play_min_p")
            params["repetition_penalty"] = st.slider(
                "repetition penalty", 0.5, 2.0, 1.0, 0.05, key="play_rep"
            )
        if caps.beam_search:
            beams = st.number_input("beam width (1 = off)", 1, 8, 1, key="play_beams")
            if beams > 1:
                params.update({"use_beam_search": True, "n": int(beams)})
        if caps.structured_output:
            params.update(constraint())
    return params


def constraint() -> dict:
    """The "constrain output" control: decoding limited to a JSON schema, a regex or a list of choices."""
    kind = st.selectbox(
        "Constrain output",
        ["no", "JSON schema", "regex", "choices"],
        key="play_constrain",
        help="The engine masks every token that would break the constraint.",
    )
    if kind == "JSON schema":
        text = st.text_area(
            "JSON schema",
            '{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}',
            key="play_schema",
        )
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            st.error(f"JSON schema: line {exc.lineno}, column {exc.colno}: {exc.msg}")
            return {}
        return {
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        }
    if kind == "regex":
        return {"guided_regex": st.text_input("Regex the answer must match", r"(yes|no)\.", key="play_regex")}
    if kind == "choices":
        choices = [
            c.strip()
            for c in st.text_input(
                "Choices, comma separated", "positive, negative", key="play_choices"
            ).split(",")
        ]
        return {"guided_choice": [c for c in choices if c]}
    return {}


def constraint_caption() -> None:
    keys = [k for k in ("response_format", "guided_regex", "guided_choice") if k in params]
    if keys:
        st.caption(
            f":material/rule: constrained by {keys[0].replace('_', ' ')}: every token was allowed by it"
        )


messages, prompt_obj = prompt_source()
if messages:
    with st.expander("Messages sent", expanded=False):
        messages_view(messages)
params = decoding()
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
beam = bool(params.get("use_beam_search"))
if mode == "Token heatmap" and beam:
    st.info(
        "Beam search returns its beams without per-token log-probabilities: set the beam width to 1 for the "
        "heatmap.",
        icon=":material/info:",
    )
blocked = not messages or (mode == "Token heatmap" and beam)
if not messages:
    st.caption("Nothing to send yet: an empty message is not sent.")


def run_stream() -> None:
    chunks = chosen.stream(messages, **params)
    last = {}

    def text():
        for chunk in chunks:
            if chunk.usage is not None:
                last["usage"], last["finish"] = chunk.usage, chunk.finish_reason
            if chunk.text:
                yield chunk.text

    with st.container(key="play_answer"):
        st.session_state["play_output"] = st.write_stream(text())
    usage_caption(last.get("usage"), last.get("finish"))
    constraint_caption()


def run_samples() -> None:
    completion = chosen.chat(messages, **params)
    for i, (text, finish) in enumerate(
        zip(completion.texts, completion.finish_reasons or [None] * len(completion.texts), strict=False),
        start=1,
    ):
        st.markdown(f"**{'Beam' if beam else 'Sample'} {i}**")
        st.text(text)
        st.caption(f"finish: {finish}" if finish else "")
    usage_caption(completion.usage)
    constraint_caption()


def run_heatmap() -> None:
    completion = chosen.chat(messages, **params, logprobs=True, top_logprobs=5)
    if not completion.logprobs or not completion.logprobs[0]:
        st.warning("This provider returned no log-probabilities.")
        return
    st.session_state["play_heatmap"] = completion.logprobs[0]
    with st.container(key="play_heatmap_box"):
        st.markdown(heatmap_html(completion.logprobs[0]), unsafe_allow_html=True)
    st.caption(
        "Colour: probability of each character (green likely, red unlikely; characters spread over several "
        "tokens show their joint probability); hover for the top alternatives."
    )
    usage_caption(completion.usage, completion.finish_reasons[0] if completion.finish_reasons else None)


def run_self_consistency() -> None:
    ran = techniques.self_consistency(chosen, prompt_obj, messages[-1]["content"], params)
    self_consistency_view(ran.output, ran.n_source, ran.template.answer_pattern)
    usage_caption(ran.output.usage)


def run_tree() -> None:
    ran = techniques.tree_of_thoughts(chosen, prompt_obj, messages[-1]["content"], params)
    tree_view(ran.output)
    usage_caption(ran.output.usage)


def run_side_by_side() -> None:
    picks = st.session_state.get("play_side") or labels[:2]
    plain = {k: v for k, v in params.items() if k in ("temperature", "top_p", "max_tokens", "seed")}
    for column, label in zip(st.columns(len(picks)), picks, strict=True):
        with column:
            st.markdown(f"**{label}**")
            with st.spinner(f"Asking {label}…"):
                completion = provider(specs[labels.index(label)]).chat(messages, **plain)
            st.text(completion.text)
            usage_caption(
                completion.usage, completion.finish_reasons[0] if completion.finish_reasons else None
            )


RUNNERS = {
    "Token heatmap": run_heatmap,
    "Self-consistency": run_self_consistency,
    "Tree of thoughts": run_tree,
    "Side by side": run_side_by_side,
}
if st.button("Run", type="primary", key="do_play_run", disabled=blocked):
    try:
        with st.spinner("Generating…"):
            if mode == "Stream":
                run_samples() if beam or params.get("n", 1) > 1 else run_stream()
            else:
                RUNNERS[mode]()
    except PromptingError as exc:
        st.error(str(exc))
