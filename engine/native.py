"""Optional C++ kernels of the engine, compiled once per machine and torch version; pure-torch fallbacks otherwise.

`kernels()` returns the compiled module, or None when there is no C++ compiler or ninja, the build fails, or
`WORKBENCH_NATIVE=0`; callers then take their torch path, which computes the same thing (tests compare both).
The build lands in `$WORKBENCH_MODELS/.native/<key>/`, keyed by the source, torch's version and the CPU's flags,
so a restart never rebuilds and a changed machine never loads a stale build. `python -m engine.native` builds
it ahead of time (`make setup` can call it), otherwise the first engine to need it pays ~1 minute once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import sysconfig
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

SOURCES = [
    Path(__file__).resolve().parent / "csrc" / name
    for name in ("paged_attention.cpp", "decoder.cpp", "qgemm.cpp")
]
# -fopenmp: ATen's parallel_for is a header-only `#pragma omp parallel`, so without it our kernels ran on one
# thread whatever torch.set_num_threads said. The module then uses the libgomp torch already loaded (same soname).
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
HEADERS = [Path(__file__).resolve().parent / "csrc" / "vec.h"]  # part of the build key: a change rebuilds
log = logging.getLogger(__name__)
STALE_LOCK_S = 600


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def build_dir() -> Path:
    import torch

    from settings import get_settings

    key = hashlib.sha256()
    for source in SOURCES + HEADERS:
        key.update(source.read_bytes())
    key.update(torch.__version__.encode())
    key.update(str(sysconfig.get_config_var("EXT_SUFFIX")).encode())  # the Python ABI the module is built for
    key.update(_cpu_flags().encode())
    key.update(" ".join(CFLAGS + LDFLAGS).encode())
    return get_settings().models_dir / ".native" / key.hexdigest()[:16]


def why_unavailable() -> str | None:
    """Why the kernels cannot be built here, or None."""
    if os.environ.get("WORKBENCH_NATIVE", "1") == "0":
        return "disabled by WORKBENCH_NATIVE=0"
    if not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler on PATH"
    try:
        import ninja  # noqa: F401
    except ImportError:
        return "ninja is not installed"
    return None


def _clear_stale_lock(folder: Path) -> None:
    """torch waits on the build folder's lock file while another process builds; a build that was killed leaves
    it behind, and every later start would wait forever. No build takes STALE_LOCK_S."""
    lock = folder / "lock"
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink(missing_ok=True)
            log.warning("removed a stale native build lock: %s", lock)
    except FileNotFoundError:
        pass


@lru_cache(maxsize=1)
def kernels() -> Any | None:
    """The compiled kernels, or None (the reason is logged once)."""
    reason = why_unavailable()
    if reason:
        log.info("native kernels off: %s", reason)
        return None
    try:
        import ninja
        from torch.utils import cpp_extension

        os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
        folder = build_dir()
        folder.mkdir(parents=True, exist_ok=True)
        _clear_stale_lock(folder)
        return cpp_extension.load(
            name="workbench_native",
            sources=[str(s) for s in SOURCES],
            build_directory=str(folder),
            extra_cflags=CFLAGS,
            extra_ldflags=LDFLAGS,
            verbose=False,
        )
    except Exception as exc:  # any build or load failure: the torch path still works
        log.warning("native kernels unavailable, using the torch path: %s", exc)
        return None


if __name__ == "__main__":
    print(
        f"native kernels: {'built in ' + str(build_dir()) if kernels() else why_unavailable() or 'build failed'}"
    )
