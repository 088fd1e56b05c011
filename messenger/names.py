"""Search keys of display names: the caseless form a name search compares (API_CONTRACT.md §4).

``name_key`` is the Unicode compatibility caseless form: NFKC, then full case folding
(``str.casefold``), then NFKC again (folding can undo a composition). So ``"ANN"``, ``"Ann"`` and
``"ann"`` share a key, ``"Straße"`` has the key of ``"strasse"``, and ``"ﬁ"`` (a ligature) that
of ``"fi"``. Both stores keep every user's key next to the name (written with it, in the same
statement or document update) and compare keys as strings in code point order (SQLite's
``BINARY`` collation on UTF-8 and MongoDB's default comparison both are), so a prefix is one
range: ``prefix_bounds``.

A change of ``name_key`` must come with a store migration that recomputes every stored key.
"""

from __future__ import annotations

import unicodedata

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def name_key(text: str) -> str:
    """The caseless form of ``text`` that name searches compare."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return unicodedata.normalize("NFKC", folded)


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``(low, high)`` such that a string starts with ``prefix`` exactly when
    ``low <= string < high`` in code point order (``high`` None: no upper bound, only for a
    prefix made of U+10FFFF alone, or the empty one). ``high`` is the least string above every
    string with the prefix: the prefix with its last character raised by one (over the
    surrogates, which no stored string holds), a final U+10FFFF dropped first."""
    stem = prefix
    while stem and ord(stem[-1]) == _MAX_CODE_POINT:
        stem = stem[:-1]
    if not stem:
        return prefix, None
    following = ord(stem[-1]) + 1
    if following in _SURROGATES:
        following = _SURROGATES.stop
    return prefix, stem[:-1] + chr(following)
