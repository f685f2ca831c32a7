"""Production traces turned into a suite of conversation cases, and a suite written back out as a log.

`import_traces` reads a log (prompting/traces.py), stops on malformed records unless told to skip them, removes
near-duplicate inputs, samples (stratified by model and first tag), scrubs personal data, maps each logged system
prompt to a version (an existing one, or one created per distinct prompt), keeps each logged answer as the case's
reference output (with a `similar` assertion against it), registers each production model as a provider, and saves
the suite. Everything is checked in memory first; the store is written only at the end.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompting.conversation import MAX_TURNS, TURNS_VAR, answered_positions
from prompting.providers import ProviderSpec
from prompting.traces import FORMATS, Bad, Trace, TraceError, read
from services.specs import save_provider
from services.suites import store_cases
from store import Store

REFERENCE_VAR = (
    "_reference"  # a case variable: the answer production gave (for `similar` and judge assertions)
)
PROMPT_TAG = "prompt:"  # a case tag: the version holding the logged system prompt (NAME@vN)
MODEL_TAG = "model:"  # a case tag: the production model
DUPLICATE_JACCARD = 0.9  # word-trigram Jaccard similarity at which two inputs count as the same
MINHASH_PERMUTATIONS = 64
MAX_BAD_SHOWN = 10
__all__ = ["FORMATS", "ImportOptions", "ImportReport", "export_records", "import_traces"]


@dataclass
class ImportOptions:
    fmt: str
    name: str | None = None
    sample: int | None = None  # keep this many (stratified by model and first tag); None keeps all
    dedupe: bool = True
    scrub: bool = True
    skip_bad: bool = False
    seed: int = 0
    version: str | None = None  # an existing version every case is meant for, instead of one per prompt
    reference: bool = True
    similarity: float = 0.8  # the `similar` assertion's threshold against the reference answer


@dataclass
class ImportReport:
    suite: str
    suite_id: int
    read: int
    bad: list[Bad]
    duplicates: int
    kept: int
    scrubbed: Counter
    versions: list[str]
    providers: list[str]
    elapsed_s: float = 0.0
    skipped: list[str] = field(default_factory=list)  # calls with nothing for the model to answer, and why


def normalised(trace: Trace) -> str:
    text = " ".join(str(m.get("content") or "") for m in trace.conversation)
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def near_duplicates(traces: list[Trace], threshold: float = DUPLICATE_JACCARD) -> list[int]:
    """Indexes of the traces whose input (the conversation, system prompt aside) is a near-duplicate of an earlier
    one: identical after normalising case, punctuation and spacing, or MinHash LSH (datasketch) estimating a word
    trigram Jaccard similarity >= threshold."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=MINHASH_PERMUTATIONS)
    seen: set[str] = set()
    duplicates = []
    for index, trace in enumerate(traces):
        text = normalised(trace)
        if text in seen:
            duplicates.append(index)
            continue
        seen.add(text)
        words = text.split()
        shingles = {" ".join(words[i : i + 3]).encode() for i in range(max(1, len(words) - 2))}
        signature = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=1)
        signature.update_batch(list(shingles))
        if lsh.query(signature):
            duplicates.append(index)
        else:
            lsh.insert(str(index), signature)
    return duplicates


def stratified_sample(traces: list[Trace], n: int, seed: int) -> list[Trace]:
    """n traces, each (model, first tag) stratum represented in proportion (largest remainders), seeded."""
    if n >= len(traces):
        return list(traces)
    strata: dict[tuple, list[Trace]] = defaultdict(list)
    for trace in traces:
        strata[(trace.model or "", trace.tags[0] if trace.tags else "")].append(trace)
    quotas = {key: n * len(items) / len(traces) for key, items in strata.items()}
    counts = {key: int(q) for key, q in quotas.items()}
    for key in sorted(quotas, key=lambda k: quotas[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[key] += 1
    rng = random.Random(seed)
    chosen = [t for key, items in sorted(strata.items()) for t in rng.sample(items, counts[key])]
    order = {id(t): i for i, t in enumerate(traces)}
    return sorted(chosen, key=lambda t: order[id(t)])


def scrub_trace(trace: Trace, tally: Counter) -> None:
    from prompting import pii  # phonenumbers' metadata loads on first use, not with the CLI

    for message in trace.messages:
        if isinstance(message.get("content"), str):
            message["content"], found = pii.scrub(message["content"])
            tally.update(found)
    if trace.answer:
        trace.answer, found = pii.scrub(trace.answer)
        tally.update(found)


def answerable(traces: list[Trace]) -> tuple[list[Trace], list[str]]:
    """The traces whose request ends with a turn the model answers (a user or tool message) within MAX_TURNS
    answered turns; the others named by where they came from and why."""
    kept, skipped = [], []
    for trace in traces:
        answered = answered_positions(trace.conversation)
        if not answered or answered[-1] != len(trace.conversation) - 1:
            skipped.append(f"{trace.where}: the request does not end with a user turn to answer")
        elif len(answered) > MAX_TURNS:
            skipped.append(f"{trace.where}: {len(answered)} answered turns; at most {MAX_TURNS} (MAX_TURNS)")
        else:
            kept.append(trace)
    return kept, skipped


def system_source(text: str) -> str:
    """A version template whose system message is `text` exactly (Jinja syntax in it stays text)."""
    escaped = re.sub(
        r"\{%-?\s*endraw\s*-?%\}", lambda m: "{% endraw %}{{ " + repr(m.group()) + " }}{% raw %}", text
    )
    return '{% message "system" %}{% raw %}' + escaped + "{% endraw %}{% endmessage %}\n"


def prompt_versions(store: Store, name: str, traces: list[Trace], version: str | None) -> dict[str, str]:
    """The version label for each distinct logged system prompt: the given version for all, or one created per
    prompt (`NAME-prompt1` the most frequent)."""
    if version:
        label = store.get_version(version).label
        return {t.system: label for t in traces}
    counts = Counter(t.system for t in traces)
    labels = {}
    for k, (text, _) in enumerate(counts.most_common(), start=1):
        if not text.strip():
            labels[text] = ""
            continue
        saved = store.save_version(
            f"{name}-prompt{k}", system_source(text), note="imported from production logs"
        )
        labels[text] = saved.label
    return labels


def case_of(trace: Trace, prompt_label: str, options: ImportOptions) -> dict[str, Any]:
    first_user = next((str(m.get("content") or "") for m in trace.conversation if m["role"] == "user"), "")
    variables: dict[str, Any] = {TURNS_VAR: trace.conversation}
    assertions = []
    if options.reference and trace.answer:
        variables[REFERENCE_VAR] = trace.answer
        assertions.append(
            {"type": "similar", "value": "{{ " + REFERENCE_VAR + " }}", "threshold": options.similarity}
        )
    tags = [*([f"{MODEL_TAG}{trace.model}"] if trace.model else []), *trace.tags]
    tags += [f"{PROMPT_TAG}{prompt_label}"] if prompt_label else []
    description = re.sub(r"\s+", " ", first_user)[:80]
    return {
        "description": description,
        "vars": variables,
        "assertions": assertions,
        "threshold": None,
        "tags": tags,
    }


def refuse_bad(bad: list[Bad]) -> None:
    shown = "\n".join(f"  {b}" for b in bad[:MAX_BAD_SHOWN])
    more = f"\n  … and {len(bad) - MAX_BAD_SHOWN} more" if len(bad) > MAX_BAD_SHOWN else ""
    raise TraceError(
        f"{len(bad)} malformed record(s); nothing imported (--skip-bad imports the rest):\n{shown}{more}"
    )


def import_traces(
    store: Store, path: Path, options: ImportOptions, progress: Callable[[str], None] | None = None
) -> ImportReport:
    start = time.perf_counter()
    say = progress or (lambda _: None)
    say(f"reading {path.name} ({options.fmt})")
    traces, bad = read(path, options.fmt)
    if bad and not options.skip_bad:
        refuse_bad(bad)
    traces, skipped = answerable(traces)
    if not traces:
        raise TraceError(f"{path.name}: no call with a user turn to answer was found; nothing imported")
    read_count = len(traces) + len(skipped)
    duplicates = near_duplicates(traces) if options.dedupe else []
    say(f"{len(traces)} calls, {len(duplicates)} near-duplicates removed")
    dropped = set(duplicates)
    unique = [t for i, t in enumerate(traces) if i not in dropped]
    kept = stratified_sample(unique, options.sample, options.seed) if options.sample else unique
    tally: Counter = Counter()
    if options.scrub:
        say(f"scrubbing personal data from {len(kept)} calls")
        for trace in kept:
            scrub_trace(trace, tally)
    name = options.name or path.stem
    labels = prompt_versions(store, name, kept, options.version)
    cases = [case_of(t, labels[t.system], options) for t in kept]
    providers = sorted({t.model for t in kept if t.model})
    for model in providers:
        save_provider(store, ProviderSpec.parse(f"openai:{model}"))
    config = {
        "source": {"file": path.name, "format": options.fmt},
        "providers": [f"openai:{m}" for m in providers],
    }
    digest = hashlib.sha256(json.dumps([cases, config], sort_keys=True, default=str).encode()).hexdigest()
    suite = store_cases(store, name, digest, cases, f"imported from {path.name}", config)
    return ImportReport(
        suite.name,
        suite.id,
        read_count,
        bad,
        len(duplicates),
        len(kept),
        tally,
        sorted({v for v in labels.values() if v}),
        [f"openai:{m}" for m in providers],
        time.perf_counter() - start,
        skipped,
    )


def export_records(store: Store, suite: str) -> list[dict[str, Any]]:
    """A suite's conversation cases as chat-completions log records, the shape `import_traces` reads: the system
    prompt rendered from the case's version (its `prompt:` tag), the conversation, and the reference answer as
    the response."""
    from services.specs import prompt_of

    stored = store.get_suite(suite)
    records = []
    for case in store.suite_cases(stored.id):
        label = next((t[len(PROMPT_TAG) :] for t in case.tags if t.startswith(PROMPT_TAG)), None)
        system = prompt_of(store.get_version(label)).render({}) if label else []
        request: dict[str, Any] = {"messages": [*system, *(case.vars.get(TURNS_VAR) or [])]}
        model = next((t[len(MODEL_TAG) :] for t in case.tags if t.startswith(MODEL_TAG)), None)
        if model:
            request = {"model": model, **request}
        record: dict[str, Any] = {"request": request}
        if case.vars.get(REFERENCE_VAR) is not None:
            message = {"role": "assistant", "content": case.vars[REFERENCE_VAR]}
            record["response"] = {"model": model, "choices": [{"index": 0, "message": message}]}
        records.append(record)
    return records
