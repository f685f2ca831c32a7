"""Template + verbalizer classification, calibrated.

Each class has label words; the class's log-probability is the log-sum-exp of its words scored as whole
continuations of the answer slot (multi-token words summed by the provider), each word with its usual variants
(leading space, capitalised). A small model's label prior can swamp the text ("positive" for everything), so by
default the prediction is contextually calibrated (Zhao et al., 2021): the class distribution is measured on
content-free inputs ("N/A", a blank, a mask), averaged, and divided out. The prior is computed once per prompt,
provider and labels in a process, and charged to the cell that computed it.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from prompting.errors import PromptingError
from prompting.providers import Provider, Usage

CONTENT_FREE = ("N/A", " ", "[MASK]")

_priors: dict[str, dict[str, float]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def variants(word: str) -> list[str]:
    """The word as the answer may start: as written, after a space, capitalised, both."""
    word = word.strip()
    forms = [word, f" {word}", word.capitalize(), f" {word.capitalize()}", word.lower(), f" {word.lower()}"]
    return list(dict.fromkeys(forms))


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _softmax(logprobs: dict[str, float]) -> dict[str, float]:
    top = max(logprobs.values())
    norm = sum(math.exp(v - top) for v in logprobs.values())
    return {cls: math.exp(v - top) / norm for cls, v in logprobs.items()}


def class_logprobs(
    messages: list[dict], labels: dict[str, list[str]], provider: Provider
) -> tuple[dict[str, float], Usage]:
    """log P(class) up to a constant: log-sum-exp over its label words and their variants."""
    usage, out = Usage(), {}
    for cls, words in labels.items():
        scores = []
        for form in (form for word in words for form in variants(word)):
            scored = provider.score(messages, form)
            usage, scores = usage + scored.usage, [*scores, scored.logprob]
        out[cls] = _logsumexp(scores)
    return out, usage


def content_free_prior(
    prompt, case_vars: dict, labels: dict[str, list[str]], provider: Provider
) -> tuple[dict[str, float], Usage]:
    """The class distribution on content-free inputs (every case variable replaced), averaged; cached."""
    renders = [
        prompt.render({name: blank for name in case_vars} or {"text": blank}) for blank in CONTENT_FREE
    ]
    key = json.dumps([provider.label, provider.model_id, renders, labels], sort_keys=True)
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # concurrent cells of one run compute it once
        if key in _priors:
            return _priors[key], Usage()
        usage, total = Usage(), dict.fromkeys(labels, 0.0)
        for messages in renders:
            logprobs, spent = class_logprobs(messages, labels, provider)
            usage = usage + spent
            for cls, p in _softmax(logprobs).items():
                total[cls] += p / len(renders)
        _priors[key] = total
        return total, usage


def classify(
    prompt, case_vars: dict, provider: Provider, labels: dict[str, list[str]], calibrate: bool = True
) -> tuple[str, dict[str, Any], Usage]:
    """(predicted class, detail, usage): per-class probabilities, the uncalibrated ones and the prior."""
    if not labels:
        raise PromptingError("the verbalizer needs labels (class -> label words)")
    messages = prompt.render(case_vars)
    logprobs, usage = class_logprobs(messages, labels, provider)
    raw = _softmax(logprobs)
    detail: dict[str, Any] = {"logprobs": logprobs, "uncalibrated": raw, "calibrated": calibrate}
    probabilities = raw
    if calibrate:
        prior, spent = content_free_prior(prompt, case_vars, labels, provider)
        usage = usage + spent
        weighted = {cls: raw[cls] / max(prior[cls], 1e-12) for cls in raw}
        norm = sum(weighted.values())
        probabilities = {cls: w / norm for cls, w in weighted.items()}
        detail["prior"] = prior
    detail["probabilities"] = probabilities
    return max(probabilities, key=probabilities.get), detail, usage
