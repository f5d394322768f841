"""Writing man(7) source: escaping text, and line-break points for Japanese.

groff 1.22 breaks lines only at spaces, so a Japanese paragraph (no spaces) would run off the
page.  :func:`escape` puts groff's zero-width break point ``\\:`` after each CJK character
where Japanese typesetting allows a break (not before closing punctuation or a prolonged
sound mark).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Hiragana, katakana, CJK ideographs and their punctuation, full-width forms.
_CJK = re.compile(r"([\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef])(?=[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef(（「『A-Za-z0-9])")
# No line may start with these (kinsoku shori).
_NO_BREAK_BEFORE = set("、。，．・：；？！ー）」』】〕ぁぃぅぇぉっゃゅょァィゥェォッャュョ")
BREAK = "\\:"


def escape(text: str) -> str:
    """``text`` safe for a roff text line: backslashes, hyphens that are options, and a
    leading dot or quote neutralised; CJK break points added."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = _CJK.sub(_break_after, text)
    return "\n".join(("\\&" + line if line[:1] in (".", "'") else line) for line in text.split("\n"))


def _break_after(match: re.Match[str]) -> str:
    char = match.group(1)
    following = match.string[match.end():match.end() + 1]
    if following in _NO_BREAK_BEFORE:
        return char
    return char + BREAK


def bold(text: str) -> str:
    """``text`` in bold, inline."""
    return f"\\fB{escape(text)}\\fR"


def italic(text: str) -> str:
    """``text`` in italics, inline."""
    return f"\\fI{escape(text)}\\fR"


def paragraphs(text: str) -> list[str]:
    """The paragraphs (separated by blank lines) of a help text, each on one line."""
    result = []
    for block in re.split(r"\n\s*\n", text.strip()):
        joined = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if joined:
            result.append(joined)
    return result


class Page:
    """A man page being written: ``.TH`` header, then sections and paragraphs."""

    def __init__(self, name: str, section: int, source: str, manual: str):
        self.lines = [
            "'\\\" t -*- coding: UTF-8 -*-",
            f'.TH "{name.upper()}" "{section}" "" "{source}" "{manual}"',
            ".ad l",
            ".nh",
        ]

    def section(self, title: str) -> None:
        """Start a section (``.SH``)."""
        self.lines.append(f'.SH "{escape(title)}"')

    def subsection(self, title: str) -> None:
        """Start a subsection (``.SS``)."""
        self.lines.append(f'.SS "{escape(title)}"')

    def text(self, text: str) -> None:
        """One paragraph of running text (already escaped roff allowed via :meth:`raw`)."""
        self.lines.extend([".PP", escape(text)])

    def raw(self, roff: str) -> None:
        """A line of roff as it is."""
        self.lines.append(roff)

    def item(self, term: str, body: Iterable[str]) -> None:
        """A tagged paragraph (``.TP``): ``term`` (roff) then ``body`` paragraphs (text)."""
        self.lines.extend([".TP", term])
        for index, para in enumerate(body):
            if index:
                self.lines.append(".IP")
            self.lines.append(escape(para))

    def example(self, lines: Iterable[str]) -> None:
        """A literal block (``.nf`` ... ``.fi``)."""
        self.lines.extend([".PP", ".RS 4", ".nf"])
        self.lines.extend(escape(line) for line in lines)
        self.lines.extend([".fi", ".RE"])

    def render(self) -> str:
        """The page's source."""
        return "\n".join(self.lines) + "\n"
