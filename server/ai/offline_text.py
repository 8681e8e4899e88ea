"""The offline provider's text templates: file contents, explanations, edits, answers. Pure.

Deterministic: the same request gives the same text, so tests can assert on it.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from server.ai.offline_rules import literals
from server.ai.prompts import file_content_target

if TYPE_CHECKING:
    from collections.abc import Mapping

_COMMENT = {
    ".py": "# {}",
    ".sh": "# {}",
    ".rb": "# {}",
    ".yaml": "# {}",
    ".yml": "# {}",
    ".toml": "# {}",
    ".js": "// {}",
    ".ts": "// {}",
    ".tsx": "// {}",
    ".jsx": "// {}",
    ".go": "// {}",
    ".rs": "// {}",
    ".java": "// {}",
    ".c": "// {}",
    ".cpp": "// {}",
    ".css": "/* {} */",
    ".md": "<!-- {} -->",
    ".html": "<!-- {} -->",
    ".sql": "-- {}",
}
_CONTENT_INTRO = re.compile(
    r"\b(?:containing|contains|with (?:the )?(?:content|text)|saying|that says)\b", re.I
)


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def comment(path: str, text: str) -> str:
    return _COMMENT.get(PurePosixPath(path).suffix.lower(), "# {}").format(text)


def _literal_after_intro(prompt: str) -> str | None:
    """``create a.txt containing "hi"`` -> ``hi``: the first quoted text after the intro word."""
    intro = _CONTENT_INTRO.search(prompt)
    if intro is None:
        return None
    quoted = literals(prompt[intro.end() :])
    return quoted[0] if quoted else None


def file_content(path: str, prompt: str) -> str:
    """The content of a new file ``path`` for ``prompt``, from a template by extension."""
    literal = _literal_after_intro(prompt)
    if literal is not None:
        return literal + "\n"
    request = one_line(prompt)
    name = PurePosixPath(path).stem
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".py":
        return (
            f'"""{request}"""\n\n\ndef main() -> None:\n    print({name!r})\n\n\n'
            'if __name__ == "__main__":\n    main()\n'
        )
    if suffix in (".js", ".ts", ".jsx", ".tsx"):
        return f"// {request}\nexport function main() {{\n  return {json.dumps(name)};\n}}\n"
    if suffix == ".md":
        title = name.replace("_", " ").replace("-", " ").strip().capitalize() or "Notes"
        return f"# {title}\n\n{request}\n"
    if suffix == ".json":
        return json.dumps({"name": name, "description": request}, indent=2) + "\n"
    if suffix in (".html", ".htm"):
        return f"<!doctype html>\n<title>{name}</title>\n<p>{request}</p>\n"
    return f"{request}\n"


def explanation(prompt: str, context: Mapping[str, str]) -> str:
    """A structural summary of the context files (the offline stand-in for an explanation)."""
    lines = [f"Offline summary for: {one_line(prompt, 120)}", ""]
    for path, text in context.items():
        line_count = len(text.splitlines())
        names = re.findall(r"^\s*(?:def|class|function|func|fn)\s+([A-Za-z_]\w*)", text, re.M)
        first = next((one_line(x, 80) for x in text.splitlines() if x.strip()), "(empty)")
        lines.append(f"- {path}: {line_count} lines, {len(text.encode())} bytes.")
        lines.append(f"  First line: {first}")
        if names:
            lines.append(f"  Defines: {', '.join(names[:20])}")
    if not context:
        lines.append("The project has no files to explain.")
    return "\n".join(lines) + "\n"


def edited(path: str, content: str, instruction: str) -> str:
    """Apply an edit instruction by rules; unrecognised instructions add a comment on top.

    Rules: ``replace "a" with "b"``, ``append "x"``, ``prepend "x"`` (or ``add "x" at the
    top``), ``uppercase``, ``lowercase``.
    """
    text = instruction.lower()
    quoted = literals(instruction)
    if "replace" in text and len(quoted) >= 2:
        return content.replace(quoted[0], quoted[1])
    if quoted and (
        "prepend" in text or re.search(r"\b(?:at|to) the (?:top|beginning|start)\b", text)
    ):
        return f"{quoted[0]}\n{content}"
    if quoted and re.search(r"\b(?:append|add|insert)\b", text):
        sep = "" if not content or content.endswith("\n") else "\n"
        return f"{content}{sep}{quoted[0]}\n"
    if re.search(r"\bupper ?case\b", text):
        return content.upper()
    if re.search(r"\blower ?case\b", text):
        return content.lower()
    return f"{comment(path, 'Edited (offline): ' + one_line(instruction, 160))}\n{content}"


def answer(prompt: str, system: str | None, context: Mapping[str, str]) -> str:
    """Text for ``ai.generate``: file content, an explanation, or a templated answer."""
    path = file_content_target(system)
    if path is not None:
        return file_content(path, prompt)
    if context:
        return explanation(prompt, context)
    return (
        f"Offline answer to: {one_line(prompt)}\n\n"
        "This text comes from stretto's offline provider, which works without a model. "
        "Set STRETTO_GEMINI_API_KEY to get answers from Gemini.\n"
    )


def chunks(text: str, words_per_chunk: int = 4) -> list[str]:
    """Split ``text`` into streaming chunks of a few words; ``"".join`` gives it back."""
    pieces = re.findall(r"\s*\S+\s*|\s+", text)
    return [
        "".join(pieces[i : i + words_per_chunk]) for i in range(0, len(pieces), words_per_chunk)
    ] or ([text] if text else [])
