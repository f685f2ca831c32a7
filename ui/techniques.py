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
        # the end token's entry has no text: mark where the answer stopped, with how sure the model was
        shown = html.escape(piece.text) if piece.text else "<small>[end]</small>"
        spans.append(
            f"<span class='tok' title='p={p:.1%}{merged}&#10;{alternatives}' "
            f"style='background:hsl({hue},80%,80%)'>{shown}</span>"
        )
    return (
        "<div class='heatmap' style='line-height:2;font-family:monospace;white-space:pre-wrap'>"
        + "".join(spans)
        + "</div>"
    )


def self_consistency_view(out, n_source: str, pattern: str) -> None:
    samples = out.detail["samples"]
    missing = sum(1 for s in samples if s["answer"] is None)
    n = len(samples)
    if out.answer is not None:
        st.metric("Majority answer", out.answer, f"{out.detail['votes'][out.answer]} of {n} votes")
    else:
        st.warning(f"No majority: no answer found in {missing} of {n} samples.", icon=":material/help:")
    enforced = (
        f"the answer line was enforced by a grammar (at most {out.detail['max_tokens']} tokens each)"
        if out.detail.get("constrained")
        else "this provider cannot constrain output, so a sample without the line is read by the fallback"
    )
    st.caption(
        f"{n} samples ({n_source}); {enforced}; answers read with the pattern `{pattern}`, normalised "
        f"before voting; {missing} of {n} had no answer."
    )
    votes = pd.DataFrame([{"answer": a, "votes": c} for a, c in out.detail["votes"].items()])
    if not votes.empty:
        st.bar_chart(votes.set_index("answer"), horizontal=True, x_label="votes")
    for i, sample in enumerate(samples, start=1):
        answer = sample["answer"] if sample["answer"] is not None else "no answer found"
        with st.expander(f"Sample {i}: {answer}"):
            st.caption(f"answer from: {sample.get('source', 'pattern')}")
            st.text(sample["text"])


def tree_view(out) -> None:
    detail, tree = out.detail, out.detail["tree"]
    st.metric("Answer", out.answer or "none found")
    st.caption(
        f"Stopped: {detail['stopped']}. breadth {detail['breadth']} (kept per level; {detail['ties']}), "
        f"depth {detail['depth']}, {detail['proposals']} proposals per node; {len(tree) - 1} thoughts, "
        f"{detail['calls']} calls."
    )
    dot = ['digraph tree { rankdir=LR; node [shape=box, style="rounded,filled", fontsize=10];']
    for node in tree:
        label = (node.get("step") or "problem").replace('"', "'")[:48]
        value = "" if node["value"] is None else f"\\nscore {node['value']:.1f}"
        colour = "palegreen" if node["kept"] else "mistyrose"
        dot.append(f'n{node["id"]} [label="{label}{value}", fillcolor="{colour}"];')
        if node["parent"] is not None:
            dot.append(f"n{node['parent']} -> n{node['id']};")
    st.graphviz_chart("\n".join(dot) + "}")
    for level in sorted({n["depth"] for n in tree}):
        rows = [
            {
                "thought": n.get("step") or "(the problem)",
                "score": "–" if n["value"] is None else f"{n['value']:.1f}",
                "decision": n.get("why", ""),
            }
            for n in tree
            if n["depth"] == level
        ]
        kept = sum(r["decision"].startswith("kept") for r in rows)
        st.markdown(f"**Level {level}**" + (f" — {kept} kept of {len(rows)}" if level else ""))
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    with st.expander(f"Raw model text of every call ({detail['calls']})", icon=":material/notes:"):
        for node in tree:
            for key, what in (
                ("proposal_text", "proposed"),
                ("evaluation_text", "scored"),
                ("answer_text", "answered"),
            ):
                if key in node:
                    st.caption(f"node {node['id']} ({node.get('step') or 'the problem'}) — {what}")
                    st.text(node[key])
