"""Where the code is in a source file, per language family, and identifier renames. Pure.

``code_spans`` splits a file into code and non-code (string literals, comments) with a small
scanner per family; it is cheap and conservative, not a parser:
- ``js`` (JS/TS): ``'`` ``"`` strings, template literals (their ``${...}`` parts are code),
  regex literals (after an operator), ``//`` and ``/* */`` comments;
- ``c`` (C, C++, Java, C#, Kotlin, Swift): ``"`` strings, triple-quoted text blocks, ``'`` chars;
- ``go``: ``"`` strings, backquoted raw strings, ``'`` runes;
- ``rust``: ``"`` strings, ``r#"…"#`` raw strings, ``'c'`` chars (not lifetimes), nested
  block comments;
- ``python``: ``#`` comments, single and triple-quoted strings with prefixes; the ``{...}``
  parts of f-strings are code.
``rename_identifier`` renames whole identifier tokens in code spans only. It is textual, not
semantic: ``{foo: 1}`` keys are renamed too; member accesses ``obj.foo`` are not, and strings
and comments never are.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

FAMILIES: dict[str, str] = {
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts"), "js"),
    **dict.fromkeys(
        (".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".java", ".cs", ".kt", ".kts", ".swift"), "c"
    ),
    ".go": "go",
    ".rs": "rust",
    **dict.fromkeys((".py", ".pyi"), "python"),
}
_IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$")
_REGEX_AFTER = frozenset("(,=:[!&|?{};+-*%<>~^")
_REGEX_KEYWORDS = ("return", "typeof", "case", "do", "else", "in", "of", "void", "yield", "await")
_PY_PREFIX = re.compile(r"(?i)(?:rb|br|fr|rf|[rbuf])?$")


def family_of(path: str) -> str | None:
    """The language family of ``path`` by extension, or None (not renamed in)."""
    return FAMILIES.get(PurePosixPath(path).suffix.lower())


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """Index after the string starting at ``i`` (the opening quote); escapes honoured."""
    n = len(text)
    i += 1
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            return i + 1
        if ch == "\n" and quote != "`":
            return i + 1  # unterminated on this line: stop here
        i += 1
    return n


def _block_comment(text: str, i: int, nested: bool) -> int:
    depth, i, n = 1, i + 2, len(text)
    while i < n and depth:
        if nested and text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _regex_allowed(text: str, i: int) -> bool:
    j = i - 1
    while j >= 0 and text[j] in " \t\r\n":
        j -= 1
    if j < 0 or text[j] in _REGEX_AFTER:
        return True
    k = j
    while k >= 0 and text[k] in _IDENT_CHARS:
        k -= 1
    return text[k + 1 : j + 1] in _REGEX_KEYWORDS


def _skip_regex(text: str, i: int) -> int:
    n, i, in_class = len(text), i + 1, False
    while i < n and text[i] != "\n":
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "/" and not in_class:
            return i + 1
        i += 1
    return i


class _Scanner:
    def __init__(self, text: str, family: str) -> None:
        self.text, self.family = text, family
        self.spans: list[tuple[int, int]] = []

    def code(self, start: int, end: int) -> None:
        if end > start:
            self.spans.append((start, end))

    def scan(self, i: int, stop_at_brace: bool) -> int:
        """Scan from ``i``; with ``stop_at_brace``, return after the ``}`` closing a ``${``."""
        text, family, n = self.text, self.family, len(self.text)
        start, depth = i, 0
        while i < n:
            ch = text[i]
            nxt = text[i + 1] if i + 1 < n else ""
            skip_to = -1
            if stop_at_brace and ch in "{}":
                if ch == "{":
                    depth += 1
                elif depth == 0:
                    self.code(start, i)
                    return i + 1
                else:
                    depth -= 1
            if family == "python":
                if ch == "#":
                    skip_to = _line_end(text, i)
                elif ch in "'\"":
                    j = i
                    while j > 0 and text[j - 1].isalpha() and i - j < 2:
                        j -= 1
                    prefix = text[j:i] if _PY_PREFIX.match(text[j:i]) else ""
                    self.code(start, i)
                    i = self.python_string(i, "f" in prefix.lower())
                    start = i
                    continue
            elif ch == "/" and nxt == "/":
                skip_to = _line_end(text, i)
            elif ch == "/" and nxt == "*":
                skip_to = _block_comment(text, i, nested=family == "rust")
            elif family == "js" and ch == "`":
                self.code(start, i)
                i = self.template(i)
                start = i
                continue
            elif family == "js" and ch == "/" and _regex_allowed(text, i):
                skip_to = _skip_regex(text, i)
            elif family == "go" and ch == "`":
                end = text.find("`", i + 1)
                skip_to = n if end < 0 else end + 1
            elif family == "rust" and ch == "r" and re.match(r'r#*"', text[i:]):
                if i == 0 or text[i - 1] not in _IDENT_CHARS:
                    hashes = len(re.match(r"r(#*)", text[i:]).group(1))  # type: ignore[union-attr]
                    close = '"' + "#" * hashes
                    end = text.find(close, i + 2 + hashes)
                    skip_to = n if end < 0 else end + len(close)
            elif family == "rust" and ch == "'":
                char = re.match(r"'(?:\\.[^']*|[^'\\])'", text[i:])
                if char:
                    skip_to = i + len(char.group(0))
            elif family == "c" and text.startswith('"""', i):
                end = text.find('"""', i + 3)
                skip_to = n if end < 0 else end + 3
            elif ch == '"' or (ch == "'" and family in ("js", "c", "go")):
                skip_to = _skip_quoted(text, i, ch)
            if skip_to >= 0:
                self.code(start, i)
                i = start = skip_to
                continue
            i += 1
        self.code(start, n)
        return n

    def template(self, i: int) -> int:
        """A JS template literal from its backquote; its ``${...}`` parts are code."""
        text, n, i = self.text, len(self.text), i + 1
        while i < n:
            if text[i] == "\\":
                i += 2
            elif text[i] == "`":
                return i + 1
            elif text.startswith("${", i):
                i = self.scan(i + 2, stop_at_brace=True)
            else:
                i += 1
        return n

    def python_string(self, i: int, formatted: bool) -> int:
        text, n = self.text, len(self.text)
        quote = text[i] * 3 if text.startswith(text[i] * 3, i) else text[i]
        i += len(quote)
        while i < n:
            if text[i] == "\\":
                i += 2
            elif text.startswith(quote, i):
                return i + len(quote)
            elif text[i] == "\n" and len(quote) == 1:
                return i + 1
            elif formatted and text.startswith("{{", i):
                i += 2
            elif formatted and text[i] == "{":
                i = self.f_expression(i + 1, quote)
            else:
                i += 1
        return n

    def f_expression(self, i: int, quote: str) -> int:
        text, n, depth, start = self.text, len(self.text), 0, i
        while i < n and not text.startswith(quote, i):
            ch = text[i]
            if ch in "([{":
                depth += 1
            elif ch in ")]}" and depth:
                depth -= 1
            elif ch == "}" or (ch in "!:" and depth == 0 and not text.startswith("!=", i)):
                break
            i += 1
        self.code(start, i)
        return i


def code_spans(text: str, family: str) -> list[tuple[int, int]]:
    """(start, end) of the code parts of ``text``, in order, not overlapping."""
    scanner = _Scanner(text, family)
    scanner.scan(0, stop_at_brace=False)
    return sorted(scanner.spans)


def _is_member(text: str, pos: int) -> bool:
    """Whether the identifier at ``pos`` follows a ``.`` (``obj.name``; not ``...name``)."""
    j = pos - 1
    while j >= 0 and text[j] in " \t\r\n":
        j -= 1
    return j >= 0 and text[j] == "." and not (j >= 2 and text[j - 2 : j + 1] == "...")


def rename_identifier(text: str, family: str, old: str, new: str) -> tuple[str, int]:
    """``text`` with every identifier token ``old`` in code renamed to ``new``; the count.

    Member accesses (``obj.old``) are left alone: ``process.env.PORT`` is not the variable
    ``PORT``. Object keys and shorthand properties (``{ old }``) are renamed.
    """
    pattern = re.compile(rf"(?<![A-Za-z0-9_$]){re.escape(old)}(?![A-Za-z0-9_$])")
    parts: list[str] = []
    count = last = 0
    for start, end in code_spans(text, family):
        for match in pattern.finditer(text, start, end):
            if _is_member(text, match.start()):
                continue
            parts.append(text[last : match.start()])
            parts.append(new)
            last = match.end()
            count += 1
    parts.append(text[last:])
    return "".join(parts), count
