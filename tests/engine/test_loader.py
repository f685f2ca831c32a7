"""Loading: the default model by name, HF folders, GGUF files, and clear errors for everything else."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config

from engine.generate import Engine
from engine.loader import ModelError, available_models, load, resolve
from engine.quantize import QuantError


def test_unknown_name_lists_available_models():
    with pytest.raises(ModelError) as err:
        resolve("gpt-17")
    assert str(err.value) == f"unknown model 'gpt-17'; available: {', '.join(available_models())}"
    assert "smollm2-135m-instruct" in available_models()


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelError, match=r"broken.gguf is not a readable GGUF file"):
        load(str(path))


def test_unsupported_architecture(tmp_path):
    folder = tmp_path / "gpt2-tiny"
    folder.mkdir()
    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10).save_pretrained(folder)
    save_file({"wte.weight": torch.zeros(10, 8)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="unsupported architecture gpt2; supported: llama, mistral, qwen2"):
        load(str(folder))


def test_folder_without_weights(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelError):
        load(str(folder))


def test_wrong_method_fails_before_loading():
    with pytest.raises(QuantError, match="unknown quantization method 'fp8'"):
        Engine.load("no-such-model", quant="fp8")


@pytest.mark.slow
def test_default_model_has_tokenizer_and_chat_template(default_model):
    assert default_model.config.model_type == "llama"
    assert default_model.tokenizer.chat_template
    text = default_model.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user\nhi<|im_end|>" in text


def test_unsupported_gguf_tensor_type_names_the_supported_ones(tmp_path):
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter

    path = tmp_path / "odd.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor(
        "token_embd.weight", np.zeros((4, 8), dtype=np.float64), raw_dtype=GGMLQuantizationType.F64
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(
        ModelError,
        match=r"odd.gguf: tensor token_embd.weight uses GGUF type F64, which cannot be "
        r"dequantized; supported types: .*Q4_1.*Q8_0",
    ):
        load(str(path))
