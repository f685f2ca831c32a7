"""Review: a person reads the outputs of a run one at a time and rates them (good or bad, a 1–5 score, tags, a
comment). Ratings are stored with what they judged, so they follow the same output into later runs; a rated output
can be promoted into its case's assertions (a new suite). Progress is kept in the database, not in the page."""

from __future__ import annotations

import streamlit as st

from services import reviews, runs
from services.errors import StoreError
from ui.common import run_label, store
from ui.techniques import heatmap_html

st.title(":material/rate_review: Review")
db = store()


def pick_run() -> str | None:
    all_runs = runs.listing(db)
    if not all_runs:
        st.info("No run to review yet: start one on the Runs page.")
        return None
    labels = {r.id: run_label(r) for r in all_runs}
    return st.selectbox("Run", list(labels), format_func=labels.get, key="review_run")


def show(item: reviews.Item) -> None:
    result = item.result
    versions, providers = runs.labels(db)  # names, not database ids
    version = versions.get(result.version_id, f"version {result.version_id}")
    provider = providers.get(result.provider_id, f"provider {result.provider_id}")
    st.markdown(f"**{item.label}** · {version} · {provider} · repeat {result.repeat_index}")
    with st.expander("Messages sent", expanded=False):
        for message in result.messages:
            st.text(f"[{message['role']}]\n{message['content']}")
    st.markdown("**Output**")
    tokens = (result.detail or {}).get("tokens")
    if tokens:
        st.markdown(heatmap_html(tokens), unsafe_allow_html=True)
    else:
        st.text(result.output or "")
    for score in item.scores:
        mark = ":green[:material/check_circle:]" if score.passed else ":red[:material/cancel:]"
        st.markdown(f"{mark} `{score.type}` ({score.score:.2f}): {score.reason}")
    if item.rated:
        last = item.ratings[0]
        st.caption(
            f"rated {'good' if last.passed else 'bad'} by {last.reviewer}"
            + (f" ({last.score}/5)" if last.score else "")
        )


def rate_controls(item: reviews.Item, who: str) -> None:
    c1, c2, c3 = st.columns([1, 1, 2])
    score = c3.select_slider(
        "Score (optional)", ["–", 1, 2, 3, 4, 5], value="–", key=f"review_score_{item.result.id}"
    )
    tags = st.text_input("Tags, comma separated", key=f"review_tags_{item.result.id}")
    comment = st.text_input("Comment (why)", key=f"review_comment_{item.result.id}")
    for column, passed, name, icon in (
        (c1, True, "Good", ":material/thumb_up:"),
        (c2, False, "Bad", ":material/thumb_down:"),
    ):
        if column.button(name, key=f"do_review_{name.lower()}", icon=icon, width="stretch", type="primary"):
            reviews.rate(
                db,
                item.result.id,
                passed,
                score=None if score == "–" else int(score),
                tags=[t.strip() for t in tags.split(",") if t.strip()],
                comment=comment,
                who=who,
            )
            st.rerun()


def promote_controls(item: reviews.Item) -> None:
    with st.expander("Promote into the suite", expanded=False, icon=":material/school:"):
        st.caption(
            "A good output becomes its case's expected answer; a bad one a `not-equals` (or, with a "
            "comment, a rubric note). Suites are immutable: this saves a new suite."
        )
        how = st.radio("As", reviews.PROMOTIONS, horizontal=True, key=f"review_how_{item.result.id}")
        if st.button("Promote", key="do_review_promote", icon=":material/upgrade:"):
            try:
                st.success(f"Saved suite {reviews.promote(db, item.result.id, how)}")
            except StoreError as exc:
                st.error(str(exc))


run_id = pick_run()
if run_id:
    who = st.text_input("Reviewer", reviews.reviewer(), key="review_who")
    only = st.radio(
        "Show",
        reviews.FILTERS,
        horizontal=True,
        key="review_filter",
        format_func=lambda f: {
            "unrated": "unrated",
            "failing": "failing",
            "flaky": "flaky (repeats disagree)",
            "disagreeing": "judge and reviewer disagree",
            "all": "all",
        }[f],
    )
    done, total = reviews.progress(db, run_id)
    st.progress(done / total if total else 0.0, text=f"{done} of {total} reviewed")
    pending = reviews.queue(db, run_id, only)
    if not pending:
        st.success("Nothing left to review here.", icon=":material/done_all:")
    else:
        position = min(st.session_state.get("review_position", 0), len(pending) - 1)
        item = pending[position]
        st.caption(f"cell {position + 1} of {len(pending)} shown by this filter")
        show(item)
        rate_controls(item, who)
        if st.button("Skip", key="do_review_skip", icon=":material/skip_next:"):
            st.session_state["review_position"] = (position + 1) % len(pending)
            st.rerun()
        if item.rated:
            promote_controls(item)
