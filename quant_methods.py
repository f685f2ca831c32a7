"""The local engine's quantization method names: the one list the engine, the suites and the pages read.

Sizes (bytes, bits per parameter) are not here: they are measured by the engine and published in its
`/v1/models` entry and in the bench report.
"""

from __future__ import annotations

import re

METHODS = ("none", "bf16", "int8", "int4", "nf4", "llm_int8", "smoothquant", "gptq", "awq", "rtn")
INT4_GROUPS = (32, 64, 128)
# gptq, awq (calibrated) and rtn (their round-to-nearest baseline): `gptq`, `gptq-g64`, `awq-3b-g64`, `rtn-3b-g64`.
CALIBRATED = ("gptq", "awq", "rtn")
CALIBRATED_BITS = (3, 4)
CALIBRATED_GROUPS = (32, 64, 128)
CALIBRATED_DEFAULT = (4, 128)  # bits, group
# The order pickers offer them in: the default first, then by how often they are worth trying.
CHOICES = (
    "int4",
    "int8",
    "bf16",
    "none",
    "int4-g64",
    "int4-g128",
    "gptq",
    "awq",
    "gptq-3b-g64",
    "awq-3b-g64",
    "nf4",
    "llm_int8",
    "smoothquant",
)


class UnknownMethod(ValueError):
    pass


def parse(spec: str | None) -> tuple[str, int | None]:
    """`int4`, `int4-g64`, `nf4`, `gptq-3b-g64` ... -> (name, group or None); anything else names what is
    supported. The bits of gptq/awq/rtn come from `parse_bits`."""
    name, group, _ = parse_bits(spec)
    return name, group


def parse_bits(spec: str | None) -> tuple[str, int | None, int | None]:
    """Like `parse`, with the code bits of gptq/awq/rtn (None for the other methods)."""
    spec = (spec or "none").strip().lower()
    match = re.fullmatch(r"(gptq|awq|rtn)(?:-(\d+)b)?(?:-g(\d+))?", spec)
    if match:
        bits = int(match.group(2) or CALIBRATED_DEFAULT[0])
        group = int(match.group(3) or CALIBRATED_DEFAULT[1])
        if bits not in CALIBRATED_BITS:
            raise UnknownMethod(f"{match.group(1)} supports {CALIBRATED_BITS} bits, got {bits}")
        if group not in CALIBRATED_GROUPS:
            raise UnknownMethod(
                f"{match.group(1)} group size {group} is not supported; choose one of {CALIBRATED_GROUPS}"
            )
        return match.group(1), group, bits
    match = re.fullmatch(r"int4(?:-g(\d+))?", spec)
    if match:
        group = int(match.group(1) or 32)
        if group not in INT4_GROUPS:
            raise UnknownMethod(f"int4 group size {group} is not supported; choose one of {INT4_GROUPS}")
        return "int4", group, None
    if spec not in METHODS:
        raise UnknownMethod(
            f"unknown quantization method '{spec}'; supported: {', '.join(METHODS)} (int4-g64, int4-g128; "
            "gptq, awq and rtn take -3b/-4b and -g32/-g64/-g128, e.g. gptq-3b-g64)"
        )
    return spec, None, None
