"""Section delimiter styles, and the escaping that keeps inserted data inside its section.

A section is a titled block of a prompt. Four styles mark it:
  hash    ### Context ###          (the next header ends it)
  equals  === Context ===
  angle   Context:\\n<<<\\n...\\n>>>
  xml     <context>...</context>   (tag = the section's noun, lower snake case)
`neutralize` rewrites any data value so that it cannot open, close or forge a section in the active style;
`parse_sections` is the inverse of `format_section` and is what the tests (and ablation views) read back.
"""

from __future__ import annotations

import re

from prompting.errors import UnknownDelimiter

STYLES = ("hash", "equals", "angle", "xml")
DEFAULT_STYLE = "hash"


def check_style(style: str) -> str:
    if style not in STYLES:
        raise UnknownDelimiter(style, list(STYLES))
    return style


def tag_name(title: str) -> str:
    """`Worked examples` -> `worked_examples`: the XML tag a section title maps to."""
    tag = re.sub(r"[^0-9a-zA-Z]+", "_", title.strip()).strip("_").lower()
    if not tag or tag[0].isdigit():
        tag = f"section_{tag}"
    return tag


def format_section(title: str, body: str, style: str) -> str:
    body = body.strip("\n")
    if style == "hash":
        return f"### {title} ###\n{body}"
    if style == "equals":
        return f"=== {title} ===\n{body}"
    if style == "angle":
        return f"{title}:\n<<<\n{body}\n>>>"
    if style == "xml":
        tag = tag_name(title)
        return f"<{tag}>\n{body}\n</{tag}>"
    raise UnknownDelimiter(style, list(STYLES))


# Escapes are backslashes, as in Markdown: a model still reads `\#\#\#` as three hashes, but no parser (and no
# reasonable reader) takes it for a header. Runs are escaped whole so no three unescaped marks stay adjacent.
_RUNS = {
    "hash": re.compile(r"#{3,}"),
    "equals": re.compile(r"={3,}"),
    "angle": re.compile(r"<{3,}|>{3,}"),
}
_XML_TAG_START = re.compile(r"<(?=\s*/|[A-Za-z_!?])")


def neutralize(value: str, style: str) -> str:
    """Rewrite data so it cannot end or forge a section in `style`; text without delimiters is unchanged."""
    if style == "xml":
        # Only tag-like `<` are touched, so `a < b` and `<3` survive as written.
        return _XML_TAG_START.sub("&lt;", value)
    pattern = _RUNS[style]
    return pattern.sub(lambda m: "".join("\\" + ch for ch in m.group(0)), value)


_HEADER = {
    "hash": re.compile(r"^### (?P<title>.+?) ###$", re.M),
    "equals": re.compile(r"^=== (?P<title>.+?) ===$", re.M),
}


def parse_sections(text: str, style: str) -> list[tuple[str, str]]:
    """Split a rendered prompt into `(title_or_tag, body)` pairs, in order; text outside sections is ignored."""
    check_style(style)
    if style in _HEADER:
        matches = list(_HEADER[style].finditer(text))
        out = []
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            out.append((m.group("title"), text[m.end() : end].strip("\n")))
        return out
    if style == "angle":
        pattern = re.compile(r"^(?P<title>[^\n]+):\n<<<\n(?P<body>.*?)\n>>>$", re.M | re.S)
        return [(m.group("title"), m.group("body")) for m in pattern.finditer(text)]
    pattern = re.compile(r"<(?P<tag>[A-Za-z_][\w]*)>\n(?P<body>.*?)\n</(?P=tag)>", re.S)
    return [(m.group("tag"), m.group("body")) for m in pattern.finditer(text)]
