"""llama.cpp's own binaries as the speed anchor: `llama-bench` and `llama-server`, built once per machine.

The source is the llama.cpp that the pinned llama-cpp-python sdist vendors (bench/engine.py's LLAMA_CPP_PIN: a
registry-reachable, fixed version). It is built with the instruction sets this CPU has, read from /proc/cpuinfo
rather than `-march=native`, and with AMX only when a probe program can actually configure a tile (some VMs
advertise AMX and fault at `ldtilecfg`: a binary built for it would die there). The binaries are cached in the
data folder under a key of version and flags, so a second run builds nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

TARGETS = ("llama-bench", "llama-server")
# /proc/cpuinfo flag -> ggml's CMake option (GGML_NATIVE is off: these decide what the build may use)
CPU_OPTIONS = {
    "avx": "GGML_AVX",
    "avx2": "GGML_AVX2",
    "bmi2": "GGML_BMI2",
    "fma": "GGML_FMA",
    "f16c": "GGML_F16C",
    "avx_vnni": "GGML_AVX_VNNI",
    "avx512f": "GGML_AVX512",
    "avx512_vbmi": "GGML_AVX512_VBMI",
    "avx512_vnni": "GGML_AVX512_VNNI",
    "avx512_bf16": "GGML_AVX512_BF16",
}
AMX_OPTIONS = {"amx_tile": "GGML_AMX_TILE", "amx_int8": "GGML_AMX_INT8", "amx_bf16": "GGML_AMX_BF16"}
# Asks the kernel for tile data permission, configures one tile and releases it: exit 0 only if AMX really works.
AMX_PROBE = r"""
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */)) return 2;
    unsigned char config[64];
    memset(config, 0, sizeof config);
    config[0] = 1;      /* palette 1 */
    config[16] = 64;    /* tile 0: 64 bytes a row */
    config[48] = 16;    /* tile 0: 16 rows */
    __asm__ volatile("ldtilecfg %0" :: "m"(config));
    __asm__ volatile("tilerelease");
    return 0;
}
"""


@dataclass(frozen=True)
class Binaries:
    folder: Path
    version: str
    options: tuple[str, ...]  # the GGML_* options turned on
    cpu: str

    def path(self, name: str) -> Path:
        return self.folder / name


def cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def cpu_name() -> str:
    """The model name and its widest vector instructions (a VM may show only "AMD EPYC", which says little)."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    line = next((row for row in text.splitlines() if row.startswith("model name")), "model name: unknown")
    flags = cpu_flags()
    if "avx512_vnni" in flags:
        vector = "AVX-512 VNNI"
    elif "avx512f" in flags:
        vector = "AVX-512"
    else:
        vector = "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{line.split(':', 1)[1].strip()} ({vector})"


def amx_works() -> bool:
    """Whether this process may configure an AMX tile (probed in a child: a fault there costs nothing here)."""
    if not {"amx_tile", "amx_int8"} <= cpu_flags() or shutil.which("gcc") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        source, exe = Path(folder) / "probe.c", Path(folder) / "probe"
        source.write_text(AMX_PROBE, encoding="utf-8")
        built = subprocess.run(["gcc", "-O1", "-mamx-tile", str(source), "-o", str(exe)], capture_output=True)
        return built.returncode == 0 and subprocess.run([str(exe)], capture_output=True).returncode == 0


def build_options() -> list[str]:
    flags = cpu_flags()
    options = [option for flag, option in CPU_OPTIONS.items() if flag in flags]
    if amx_works():
        options += [option for flag, option in AMX_OPTIONS.items() if flag in flags]
    return options


def ensure(pin: str, cache_root: Path) -> Binaries | str:
    """The cached binaries for this machine, building them first if needed; or why they cannot be built."""
    version = pin.split("==")[1]
    options = build_options()
    key = hashlib.sha256(json.dumps([version, options]).encode()).hexdigest()[:12]
    folder = cache_root / f"llama.cpp-{version}-{key}"
    binaries = Binaries(folder, version, tuple(options), cpu_name())
    if all(binaries.path(name).is_file() for name in TARGETS):
        return binaries
    for tool in ("cmake", "g++"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: llama.cpp cannot be built here"
    print(f"building llama.cpp {version} ({', '.join(options)}): several minutes, once ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as work:
        source = _vendored_source(pin, Path(work))
        if isinstance(source, str):
            return source
        why = _build(source, Path(work) / "build", options)
        if why:
            return why
        folder.mkdir(parents=True, exist_ok=True)
        for name in TARGETS:
            shutil.copy2(Path(work) / "build" / "bin" / name, binaries.path(name))
    return binaries


def _vendored_source(pin: str, work: Path) -> Path | str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            pin,
            "-d",
            work,
        ],
        capture_output=True,
        text=True,
    )
    archives = list(work.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not archives:
        return f"could not download the {pin} sdist: {done.stderr.strip()[-300:]}"
    with tarfile.open(archives[0]) as archive:
        members = [m for m in archive.getmembers() if "/vendor/llama.cpp/" in m.name]
        archive.extractall(work, members=members, filter="data")
    return next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))


def _build(source: Path, build: Path, options: list[str]) -> str | None:
    configure = [
        "cmake",
        "-S",
        str(source),
        "-B",
        str(build),
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=OFF",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_CURL=OFF",
        *[
            f"-D{name}={'ON' if name in options else 'OFF'}"
            for name in [*CPU_OPTIONS.values(), *AMX_OPTIONS.values()]
        ],
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for step in (configure, ["cmake", "--build", str(build), "--target", *TARGETS, "-j"]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return (
                f"building llama.cpp failed at `{' '.join(step[:3])}`: {(done.stderr or done.stdout)[-600:]}"
            )
    return None


def llama_bench(
    binaries: Binaries, gguf: Path, threads: int, prompt: int, generate: int, repeats: int
) -> dict:
    """llama-bench's pp{prompt} and tg{generate} in tokens/s (its own averages over `repeats` runs)."""
    command = [
        str(binaries.path("llama-bench")),
        "-m",
        str(gguf),
        "-t",
        str(threads),
        "-p",
        str(prompt),
        "-n",
        str(generate),
        "-r",
        str(repeats),
        "-o",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout)
    prefill = next(r for r in rows if r["n_prompt"] == prompt and r["n_gen"] == 0)
    decode = next(r for r in rows if r["n_gen"] == generate and r["n_prompt"] == 0)
    return {"prefill_tok_s": prefill["avg_ts"], "decode_tok_s": decode["avg_ts"], "runs": rows}


def server_command(binaries: Binaries, gguf: Path, threads: int, port: int, parallel: int) -> list[str]:
    """llama-server with continuous batching over `parallel` slots (each with the whole context it may need)."""
    return [
        str(binaries.path("llama-server")),
        "-m",
        str(gguf),
        "-t",
        str(threads),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--parallel",
        str(parallel),
        "--ctx-size",
        str(2048 * parallel),
        "--cont-batching",
    ]
