"""The local engine's quantization method names: the one list the engine, the suites and the pages read.

Sizes (bytes, bits per parameter) are not here: they are measured by the engine and published in its
`/v1/models` entry and in the bench report.
"""

from __future__ import annotations

import re

METHODS = ("none", "bf16", "int8", "int4", "nf4", "llm_int8", "smoothquant")
INT4_GROUPS = (32, 64, 128)
# The order pickers offer them in: the default first, then by how often they are worth trying.
CHOICES = ("int4", "int8", "bf16", "none", "int4-g64", "int4-g128", "nf4", "llm_int8", "smoothquant")


class UnknownMethod(ValueError):
    pass


def parse(spec: str | None) -> tuple[str, int | None]:
    """`int4`, `int4-g64`, `nf4` ... -> (name, int4 group or None); anything else names what is supported."""
    spec = (spec or "none").strip().lower()
    match = re.fullmatch(r"int4(?:-g(\d+))?", spec)
    if match:
        group = int(match.group(1) or 32)
        if group not in INT4_GROUPS:
            raise UnknownMethod(f"int4 group size {group} is not supported; choose one of {INT4_GROUPS}")
        return "int4", group
    if spec not in METHODS:
        raise UnknownMethod(
            f"unknown quantization method '{spec}'; supported: {', '.join(METHODS)} (int4-g64, int4-g128)"
        )
    return spec, None
