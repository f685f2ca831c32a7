"""bench/llama_native.py: llama.cpp is built with what this CPU has (AMX only where a tile can be configured), and
a machine builds it once: the cache is keyed by version and options."""

from __future__ import annotations

import hashlib
import json

from bench import llama_native


def test_build_options_follow_the_cpu_flags_and_amx_needs_a_working_probe(monkeypatch):
    flags = {"avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"}
    monkeypatch.setattr(llama_native, "cpu_flags", lambda: flags)
    monkeypatch.setattr(llama_native, "amx_works", lambda: False)  # advertised, but the probe faulted
    assert llama_native.build_options() == [
        "GGML_AVX",
        "GGML_AVX2",
        "GGML_FMA",
        "GGML_F16C",
        "GGML_AVX512",
        "GGML_AVX512_VNNI",
    ]
    monkeypatch.setattr(llama_native, "amx_works", lambda: True)
    assert llama_native.build_options()[-2:] == ["GGML_AMX_TILE", "GGML_AMX_INT8"]


def test_amx_probe_is_not_run_without_the_flags(monkeypatch):
    monkeypatch.setattr(llama_native, "cpu_flags", lambda: {"avx2"})
    assert llama_native.amx_works() is False


def test_cached_binaries_are_used_without_building(monkeypatch, tmp_path):
    monkeypatch.setattr(llama_native, "build_options", lambda: ["GGML_AVX2"])
    key = hashlib.sha256(json.dumps(["0.3.36", ["GGML_AVX2"]]).encode()).hexdigest()[:12]
    folder = tmp_path / f"llama.cpp-0.3.36-{key}"
    folder.mkdir()
    for name in llama_native.TARGETS:
        (folder / name).write_text("")
    monkeypatch.setattr(
        llama_native, "_vendored_source", lambda *a: (_ for _ in ()).throw(AssertionError("built"))
    )
    binaries = llama_native.ensure("llama-cpp-python==0.3.36", tmp_path)
    assert binaries.folder == folder and binaries.options == ("GGML_AVX2",)
