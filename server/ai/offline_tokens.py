"""Tokens of a request for the offline grammar: quoted text, fenced blocks, paths. Pure.

``tokenize`` replaces what must be taken verbatim by placeholders, so that the grammar in
``server.ai.offline_grammar`` matches the words around them:
- a fenced block (```` ``` ````) -> ``⟨F0⟩``: its lines, verbatim;
- text in double quotes (also ``“…”``), single quotes around text, or backticks -> ``⟨Q0⟩``,
  unless backticks hold a path;
- a path (contains ``/``, ends in an extension, or is a file of the project), or a folder
  (ends in ``/``; a bare folder name after "in"/"under" or before "folder"/``폴더``) -> ``⟨P0⟩``.

Placeholders keep the case of the rest of the request: identifiers are matched as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.errors import InvalidPath
from server.vfs.paths import validate_path

if TYPE_CHECKING:
    from collections.abc import Sequence, Set

_FENCE_RE = re.compile(r"```[^\n`]*\n(?P<body>.*?)```", re.S)
_QUOTE_RE = re.compile(
    r"\"(?P<d>[^\"\n]*)\"|“(?P<c>[^”\n]*)”|(?<![A-Za-z0-9_])'(?P<s>[^'\n]+)'(?![A-Za-z0-9_])"
    r"|`(?P<b>[^`\n]+)`"
)
_WORD_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")
_URL_RE = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://\S*")
_EXT_RE = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,9}$")
_BEFORE_FOLDER = re.compile(r"(?:\b(?:in|under|inside|within|from|into|to)\s+(?:the\s+)?)$", re.I)
_AFTER_FOLDER = re.compile(r"^\s*(?:folder|directory|dir|폴더|디렉터리|디렉토리)")
_WINDOW = 24  # characters around a word that tell whether it names a folder
_AFTER_PARTICLE = re.compile(r"^(?:에서|안에서|안의|의\s)")


@dataclass
class Tokens:
    """A request with its verbatim parts taken out (see the module docstring)."""

    skeleton: str
    literals: list[str] = field(default_factory=list)
    fences: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def is_valid_path(path: str) -> bool:
    try:
        validate_path(path)
    except InvalidPath:
        return False
    return True


def folder_names(files: Sequence[str]) -> frozenset[str]:
    """Every folder of ``files`` (``src/routes/``) and every folder's name (``routes/``)."""
    names: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i, part in enumerate(parts):
            names.add("/".join(parts[: i + 1]) + "/")
            names.add(part + "/")
    return frozenset(names)


def _path_of(word: str, before: str, after: str, known: Set[str], folders: Set[str]) -> str | None:
    """``word`` as a path or folder (ending in ``/``), or None when it is a plain word."""
    if word.endswith("/"):
        return word if is_valid_path(word.rstrip("/")) else None
    if word in known:
        return word
    if "/" in word or _EXT_RE.search(word):
        return word if is_valid_path(word) else None
    near_folder = _BEFORE_FOLDER.search(before) or _AFTER_FOLDER.match(after)
    if (near_folder or _AFTER_PARTICLE.match(after)) and word + "/" in folders:
        return word + "/"
    return None


def tokenize(prompt: str, files: Sequence[str]) -> Tokens:
    """The request with fences, quoted texts and paths replaced by placeholders.

    A request that holds the placeholder brackets itself gets the skeleton ``⟨INVALID⟩``,
    which no form matches (its brackets would be taken for placeholders).
    """
    tokens = Tokens(skeleton="")
    known, folders = frozenset(files), folder_names(files)
    if "⟨" in prompt or "⟩" in prompt:
        tokens.skeleton = "⟨INVALID⟩"
        return tokens

    def fence(match: re.Match[str]) -> str:
        tokens.fences.append(match.group("body"))
        return f" ⟨F{len(tokens.fences) - 1}⟩ "

    def quote(match: re.Match[str]) -> str:
        backticked = match.group("b")
        if backticked is not None:
            inner = backticked.strip()
            pathlike = inner in known or "/" in inner or _EXT_RE.search(inner)
            if pathlike and is_valid_path(inner.rstrip("/")):
                tokens.paths.append(inner)
                return f"⟨P{len(tokens.paths) - 1}⟩"
            tokens.literals.append(backticked)
            return f"⟨Q{len(tokens.literals) - 1}⟩"
        text = next(
            g for g in (match.group("d"), match.group("c"), match.group("s")) if g is not None
        )
        tokens.literals.append(text)
        return f"⟨Q{len(tokens.literals) - 1}⟩"

    text = _FENCE_RE.sub(fence, prompt)
    text = _QUOTE_RE.sub(quote, text)
    text = _URL_RE.sub(" ⟨URL⟩ ", text)
    out: list[str] = []
    last = 0
    for match in _WORD_RE.finditer(text):
        word = match.group(0)
        start, end = match.start(), match.end()
        if start > 0 and text[start - 1] == "⟨":  # inside a placeholder
            continue
        while word and word[-1] in ".,":  # sentence punctuation, not part of the path
            word, end = word[:-1], end - 1
        if not word:
            continue
        window = text[max(0, start - _WINDOW) : start], text[end : end + _WINDOW]
        path = _path_of(word, *window, known, folders)
        if path is None:
            continue
        tokens.paths.append(path)
        out.append(text[last:start])
        out.append(f"⟨P{len(tokens.paths) - 1}⟩")
        last = end
    out.append(text[last:])
    tokens.skeleton = " ".join("".join(out).split())
    return tokens
