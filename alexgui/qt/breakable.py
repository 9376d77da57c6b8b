"""Long paths, addresses and digests in wrapped labels: a QLabel breaks lines only at spaces, so one long
word (a path, a URL, a 64-digit SHA-256) widens the label, its form and the dock past the window."""

from __future__ import annotations

import html
import re

LONG_WORD = re.compile(r"\S{25,}")


def breakable_html(text: str) -> str:
    """Plain text as label HTML that can wrap inside paths, addresses and digests: a zero-width space
    after each / . - _ and every 16 characters of a long word (a label only breaks at spaces, and one
    unbreakable 64-digit SHA-256 would ask for more width than a side dock has)."""

    def split(match: re.Match[str]) -> str:
        word = re.sub(r"([/._\-])", "\\1\u200b", match.group(0))
        return re.sub(r"([^\u200b]{16})(?=[^\u200b])", "\\1\u200b", word)

    broken = LONG_WORD.sub(split, text)
    return html.escape(broken).replace("\n", "<br>").replace("  ", "&nbsp;&nbsp;")
