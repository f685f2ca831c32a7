"""Tiny random Llama-family models built from a config, and a byte tokenizer: most engine tests use these."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from engine.generate import Engine
from engine.model import build_model
from engine.tokens import _byte_decoder


class ByteTokenizer:
    """Ids 0..255 are bytes, 256 is end-of-sequence: enough tokenizer for the decode loop."""

    eos_token_id = 256

    def __init__(self):
        self._chars = {b: ch for ch, b in _byte_decoder().items()}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self._chars[token_id] if token_id < 256 else "<eos>"


def tiny_config(vocab_size: int = 257, **overrides) -> LlamaConfig:
    values = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=256,
        bos_token_id=None,
        pad_token_id=None,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_hf(config=None, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config or tiny_config()).eval()
    # Random init gives near-uniform logits; sharpen them so greedy and sampling are meaningfully different.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def engine_for(pair, method: str = "none", **kwargs) -> Engine:
    """An engine on a fresh copy of the tiny model quantized with `method`, over the byte tokenizer."""
    from engine.quantize import quantize

    hf, _ = pair
    model = build_model(hf.config, hf.state_dict())
    quantize(model, method)
    return Engine(model, ByteTokenizer(), method=method, **kwargs)


@pytest.fixture(scope="session")
def tiny_pair():
    hf = tiny_hf()
    return hf, build_model(hf.config, hf.state_dict())


@pytest.fixture
def tiny_engine(tiny_pair):
    hf, _ = tiny_pair
    return Engine(build_model(hf.config, hf.state_dict()), ByteTokenizer(), max_batch=8)


@pytest.fixture(scope="session")
def real_tokenizer():
    """The default model's tokenizer (chat template included) without its weights: fast to load."""
    from transformers import AutoTokenizer

    from engine.loader import converted_dir

    return AutoTokenizer.from_pretrained(converted_dir("smollm2-135m-instruct"))


@pytest.fixture(scope="session")
def tiny_chat_pair(real_tokenizer):
    """A tiny random model over the real tokenizer's vocabulary: the server's whole surface, in milliseconds."""
    config = tiny_config(
        vocab_size=len(real_tokenizer), eos_token_id=real_tokenizer.eos_token_id, max_position_embeddings=2048
    )
    hf = tiny_hf(config, seed=1)
    return hf, real_tokenizer


def tiny_chat_engine(pair, max_batch: int = 8) -> Engine:
    hf, tokenizer = pair
    return Engine(
        build_model(hf.config, hf.state_dict()), tokenizer, max_batch=max_batch, name="tiny", method="none"
    )


@pytest.fixture(params=["tiles", "aten"])
def layout(request, monkeypatch):
    """Both weight layouts of the int4/int8 methods: our tile kernels' (where built: AVX-512 VNNI) and torch's
    kernels' (every other machine). Models must be quantized after this fixture runs."""
    from engine import tiles

    if request.param == "aten":
        monkeypatch.setattr(tiles, "tile_kernels", lambda: None)
    elif tiles.tile_kernels() is None:
        pytest.skip("the tile kernels are not built here")
    return request.param
