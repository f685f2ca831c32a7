"""How the Playground shows a technique at work: the token heatmap (whole characters), the self-consistency vote
(every sample's extracted answer, the votes, what did not parse and the pattern used) and the tree-of-thoughts
search (every node, level by level, with its score and whether it was kept). Outputs are shown as text, never
rendered as Markdown."""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from prompting.logprobs import characters


def usage_caption(usage, finish: str | None = None) -> None:
    """Tokens, latency and finish reason under an answer."""
    if usage is None:
        return
    parts = [f"{usage.tokens_in} tokens in", f"{usage.tokens_out} out", f"{usage.latency_ms:,.0f} ms"]
    if usage.calls > 1:
        parts.append(f"{usage.calls} calls")
    if finish:
        parts.append(f"finish: {finish}")
    st.caption(" · ".join(parts))


def heatmap_html(tokens: list[dict]) -> str:
    spans = []
    for piece in characters(tokens):
        p = piece.probability
        hue = int(120 * p)  # red (unlikely) .. green (likely)
        alternatives = "&#10;".join(f"{html.escape(repr(t))}: {q:.1%}" for t, q in piece.alternatives)
        merged = f" ({len(piece.tokens)} tokens)" if len(piece.tokens) > 1 else ""
        spans.append(f"<span class='tok' title='p={p:.1%}{merged}&#10;{alternatives}' "
                     f"style='background:hsl({hue},80%,80%)'>{html.escape(piece.text)}</span>")  # fmt: skip
    return ("<div class='heatmap' style='line-height:2;font-family:monospace;white-space:pre-wrap'>"
            + "".join(spans) + "</div>")  # fmt: skip


def self_consistency_view(out, n_source: str, pattern: str) -> None:
    samples = out.detail["samples"]
    missing = sum(1 for s in samples if s["answer"] is None)
    n = len(samples)
    if out.answer is not None:
        st.metric("Majority answer", out.answer, f"{out.detail['votes'][out.answer]} of {n} votes")
    else:
        st.warning(f"No majority: no answer found in {missing} of {n} samples.", icon=":material/help:")
    st.caption(f"{n} samples ({n_source}); answers extracted with the pattern `{pattern}`, normalised before "
               f"voting; {missing} of {n} had no extractable answer.")  # fmt: skip
    votes = pd.DataFrame([{"answer": a, "votes": c} for a, c in out.detail["votes"].items()])
    if not votes.empty:
        st.bar_chart(votes.set_index("answer"), horizontal=True, x_label="votes")
    for i, sample in enumerate(samples, start=1):
        answer = sample["answer"] if sample["answer"] is not None else "no answer found"
        with st.expander(f"Sample {i}: {answer}"):
            st.text(sample["text"])


def tree_view(out) -> None:
    st.metric("Answer", out.answer or "none found")
    tree = out.detail["tree"]
    detail = out.detail
    st.caption(f"breadth {detail['breadth']} (kept per level), depth {detail['depth']}, "
               f"{detail['proposals']} proposals per node; {len(tree) - 1} thoughts explored.")  # fmt: skip
    dot = ['digraph tree { rankdir=LR; node [shape=box, style="rounded,filled", fontsize=10];']
    for node in tree:
        label = (node.get("step") or "problem").replace('"', "'")[:48]
        value = "" if node["value"] is None else f"\\nscore {node['value']:.1f}"
        colour = "palegreen" if node["kept"] else "mistyrose"
        dot.append(f'n{node["id"]} [label="{label}{value}", fillcolor="{colour}"];')
        if node["parent"] is not None:
            dot.append(f"n{node['parent']} -> n{node['id']};")
    st.graphviz_chart("\n".join(dot) + "}")
    levels = sorted({n["depth"] for n in tree if n["depth"] > 0})
    for level in levels:
        rows = [{"thought": n.get("step", ""), "score": n["value"], "kept": "kept" if n["kept"] else "pruned"}
                for n in tree if n["depth"] == level]  # fmt: skip
        st.markdown(f"**Level {level}** — {sum(r['kept'] == 'kept' for r in rows)} kept of {len(rows)}")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if not levels:
        st.info(
            "The model proposed no next step (no lines starting with '- '), so the tree has only its root."
        )
