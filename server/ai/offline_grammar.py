"""The offline provider's grammar: the requests it can carry out exactly, in English and Korean.

``parse(prompt, files)`` returns an ``Operation`` when the *whole* request (politeness aside)
matches one of the forms below, else None. Matching the whole request is the point: "remove
the console.log calls from app.js" is not "remove app.js", so a partial match never counts.

| operation | English | Korean |
|---|---|---|
| search | find "TODO" in src/; grep for regex "a.*b" | "TODO" 검색해줘; src/에서 "TODO" 찾아줘 |
| replace | replace "a" with "b" in app.js | app.js에서 "a"를 "b"로 바꿔줘 |
| rename | rename foo to bar in src/ | src/에서 foo를 bar로 이름 바꿔줘 |
| move | move a.js to lib/b.js | a.js를 lib/b.js로 옮겨줘 |
| delete | delete utils.js | utils.js 파일 삭제해줘 |
| list | list the files in src/ | src/ 파일 목록 보여줘 |
| create | create a.md containing "x" (or a fenced block) | a.md 파일을 "x" 내용으로 만들어줘 |
| summary | summarize the project; summarize src/ | 프로젝트 요약해줘 |

Pure: no I/O. Quoted text, fenced blocks and paths come from ``server.ai.offline_tokens``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.ai.offline_tokens import Tokens, tokenize

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_SKELETON = 400
"""Longest request, quoted text and fenced blocks aside, that can be an exact operation: the
forms are short sentences, and a bound keeps matching cheap whatever the user sends."""
IDENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class Operation:
    """What to do. ``targets``: files or folders (ending in ``/``); empty means the project.

    ``kind``: search, replace, rename, move, delete, list, create, summary. ``old``: the search
    pattern (``regex`` tells whether it is a regular expression), the text or identifier
    to replace; ``new``: its replacement; ``dest``: a move's target; ``content``: a new
    file's exact content.
    """

    kind: str
    old: str = ""
    new: str = ""
    targets: tuple[str, ...] = ()
    dest: str = ""
    content: str = ""
    regex: bool = False


# -- macros of the forms ----------------------------------------------------------------------
_SEP = r"\s*(?:,\s*and|,|and|및|와|과|랑|하고)\s*"
_MACROS = {
    "KEND": r"(?:\s*(?:줘요|줘|주세요|주십시오|줄래요|줄래|주실래요|봐\s*줘|봐요|봐|주라|라|요))?",
    "OBJ": r"\s*(?:을|를|은|는)?\s*",
    "TO": r"\s*(?:으로|로)\s*",
    "IN": r"\s*(?:파일|폴더|디렉터리|디렉토리)?\s*(?:에서|안에서|안의|의|에 있는)\s*",
    "PROJECT": r"(?:(?:the\s+)?(?:whole\s+|entire\s+)?(?:project|codebase|repo|repository|code)"
    r"|all\s+(?:the\s+)?files|every\s+file)",
}
_SCOPE_EN = (
    r"(?:\s+(?:in|under|inside|within|across|throughout|from)\s+(?:the\s+)?"
    r"(?:{PS:where}(?:\s+(?:folder|directory|dir|file|files))?|{PROJECT})|\s+everywhere)?"
)
_SCOPE_KO = r"(?:{PS:where}{IN}|(?:프로젝트\s*)?전체(?:에서)?\s*|모든\s*파일(?:에서)?\s*)?"
_NOUN_VERBS = (
    "삭제", "제거", "변경", "교체", "치환", "이동", "검색", "생성", "작성", "요약", "나열", "출력",
    "저장", "리네임", "수정",
)  # fmt: skip
"""Korean verbs made of a noun and 하다: 삭제, 삭제해, 삭제하세요..."""


def _k(*stems: str) -> str:
    """Korean verbs: ``삭제`` also as 삭제해/삭제하세요..., then a polite ending."""
    forms = [
        rf"{s}(?:해|하세요|하십시오|하라|하기)?" if s.endswith(_NOUN_VERBS) else s for s in stems
    ]
    return "(?:" + "|".join(forms) + "){KEND}"


def _sub(pattern: str, make: Callable[[str], str], form: str) -> str:
    return re.sub(pattern, lambda m: make(m.group(1)), form)


def _expand(form: str) -> re.Pattern[str]:
    form = form.replace("{SCOPE}", _SCOPE_EN).replace("{KSCOPE}", _SCOPE_KO)
    for name, value in _MACROS.items():
        form = form.replace("{" + name + "}", value)
    form = _sub(r"\{Q:(\w+)\}", lambda g: rf"⟨Q(?P<{g}>\d+)⟩", form)
    form = _sub(r"\{C:(\w+)\}", lambda g: rf"⟨(?P<{g}>[QF]\d+)⟩", form)
    form = _sub(r"\{P:(\w+)\}", lambda g: rf"⟨P(?P<{g}>\d+)⟩", form)
    form = _sub(r"\{PS:(\w+)\}", lambda g: rf"(?P<{g}>⟨P\d+⟩(?:{_SEP}⟨P\d+⟩)*)", form)
    form = _sub(r"\{I:(\w+)\}", lambda g: rf"(?P<{g}>[A-Za-z_$][A-Za-z0-9_$]*|⟨Q\d+⟩)", form)
    return re.compile(form, re.I)


_TEXT = r"(?:\s+(?:the\s+)?(?:text|string|word|literal|phrase))?"
_KIND_EN = (
    r"(?:\s+(?:the|all))?(?:\s+(?:function|variable|class|identifier|symbol|method|"
    r"const|constant|field|property|type|interface|parameter))?"
)
_KIND_KO = r"(?:(?:함수|변수|클래스|메서드|메소드|식별자|심볼|상수|필드|속성|타입)\s*)?"

_FORMS: list[tuple[str, str]] = [
    # search (regex)
    (
        "regex",
        r"(?:search|grep|find|look)(?:\s+for)?(?:\s+(?:lines|text))?(?:\s+matching)?"
        r"(?:\s+(?:the|a))?\s+(?:regex|regexp|regular\s+expression|pattern)\s+{Q:old}{SCOPE}",
    ),
    ("regex", r"(?:find|show|list)\s+(?:all\s+)?lines\s+matching\s+{Q:old}{SCOPE}"),
    ("regex", r"grep\s+-E\s+{Q:old}{SCOPE}"),
    (
        "regex",
        r"{KSCOPE}(?:정규\s*(?:표현)?식|regex|패턴)\s*{Q:old}{OBJ}(?:(?:으로|로)\s*)?(?:"
        + _k("검색", "찾아")
        + ")",
    ),
    # search (literal)
    ("search", r"(?:search|grep|look)(?:\s+for)?" + _TEXT + r"\s+{Q:old}{SCOPE}"),
    (
        "search",
        r"(?:find|locate|show)(?:\s+(?:all|every))?(?:\s+(?:the\s+)?(?:occurrences|uses|"
        r"usages|references|mentions|lines\s+containing|places\s+using|matches)\s+(?:of|to|for))?"
        + _TEXT
        + r"\s+{Q:old}{SCOPE}",
    ),
    ("search", r"search\s+{PS:where}\s+for" + _TEXT + r"\s+{Q:old}"),
    (
        "search",
        r"where\s+(?:is|are)\s+{I:old}\s+(?:used|defined|called|mentioned)(?:\s+in\s+"
        r"{PS:where})?",
    ),
    (
        "search",
        r"(?:search\s+for|grep(?:\s+for)?|find\s+(?:all\s+)?(?:occurrences|uses|usages|"
        r"references|calls)\s+(?:of|to))\s+{I:old}{SCOPE}",
    ),
    (
        "search",
        r"{KSCOPE}{Q:old}{OBJ}(?:(?:이|가)\s*)?(?:어디(?:에|서)?\s*)?(?:"
        + _k("검색", "찾아", "grep")
        + ")",
    ),
    (
        "search",
        r"{KSCOPE}{I:old}{OBJ}(?:사용(?:하는|된|되는)\s*곳(?:을)?\s*)?(?:"
        + _k("검색", "찾아")
        + ")",
    ),
    # replace (quoted literals)
    (
        "replace",
        r"(?:replace|change|substitute|swap)(?:\s+(?:all|every|each))?(?:\s+(?:the\s+)?"
        r"(?:occurrences?|instances?)\s+of)?" + _TEXT + r"\s+{Q:old}\s+(?:with|to|by|into|for)\s+"
        r"{Q:new}{SCOPE}",
    ),
    (
        "replace",
        r"(?:in|inside)\s+{PS:where}\s*,?\s+(?:replace|change)(?:\s+all)?"
        + _TEXT
        + r"\s+{Q:old}\s+(?:with|to|by|into)\s+{Q:new}",
    ),
    (
        "replace",
        r"(?:replace|change)(?:\s+all)?\s+{Q:old}\s+in\s+{PS:where}\s+(?:with|to|by|into)"
        r"\s+{Q:new}",
    ),
    (
        "replace",
        r"{KSCOPE}(?:(?:모든|전부)\s*)?{Q:old}{OBJ}(?:(?:모두|전부)\s*)?{Q:new}{TO}(?:(?:모두|"
        r"전부)\s*)?(?:" + _k("바꿔", "변경", "교체", "치환", "수정") + ")",
    ),
    # rename an identifier
    ("rename", r"rename" + _KIND_EN + r"\s+{I:old}\s+(?:to|as|into)\s+{I:new}{SCOPE}"),
    (
        "rename",
        r"(?:in|inside|across)\s+{PS:where}\s*,?\s+rename"
        + _KIND_EN
        + r"\s+{I:old}\s+(?:to|as|into)\s+{I:new}",
    ),
    (
        "rename",
        r"{KSCOPE}" + _KIND_KO + r"{I:old}(?:\s*(?:함수|변수|클래스|메서드|식별자|상수))?"
        r"(?:\s*(?:의\s*)?이름)?{OBJ}{I:new}{TO}(?:(?:이름\s*(?:을\s*)?)(?:"
        + _k("바꿔", "변경", "수정")
        + r")|"
        + _k("리네임")
        + ")",
    ),
    (
        "rename",
        r"{KSCOPE}" + _KIND_KO + r"{I:old}(?:\s*(?:함수|변수|클래스|메서드|식별자|상수))?"
        r"\s*(?:의\s*)?이름(?:을|를)?\s*{I:new}{TO}(?:" + _k("바꿔", "변경", "수정") + ")",
    ),
    # move / rename a file
    (
        "move",
        r"(?:move|mv|relocate|rename)(?:\s+(?:the\s+)?(?:file|folder|directory))?\s+"
        r"{P:src}(?:\s+(?:file|folder|directory))?\s+(?:to|into|as|under)\s+(?:the\s+)?{P:dst}"
        r"(?:\s+(?:folder|directory))?",
    ),
    (
        "move",
        r"{P:src}(?:\s*(?:파일|폴더|디렉터리|디렉토리))?(?:\s*(?:의\s*)?이름)?{OBJ}{P:dst}"
        r"(?:\s*(?:폴더|디렉터리|디렉토리))?\s*(?:으로|로|에)\s*(?:(?:이름\s*(?:을\s*)?)?(?:"
        + _k("바꿔", "변경")
        + ")|"
        + _k("옮겨", "이동", "이동시켜", "옮기기")
        + ")",
    ),
    # delete
    (
        "delete",
        r"(?:delete|remove|rm|erase)(?:\s+(?:the|all|all\s+the))?(?:\s+(?:files?|folder|"
        r"directory))?\s+{PS:where}(?:\s+(?:files?|folder|directory))?",
    ),
    (
        "delete",
        r"(?:delete|remove)\s+(?:all\s+|every\s+)?(?:the\s+)?files?\s+(?:in|under|inside)"
        r"\s+(?:the\s+)?{PS:where}(?:\s+(?:folder|directory))?",
    ),
    (
        "delete",
        r"{PS:where}(?:\s*(?:파일|폴더|디렉터리|디렉토리))?(?:\s*(?:안의|에 있는|의)\s*(?:모든\s*)?"
        r"파일(?:들)?)?{OBJ}(?:(?:모두|전부)\s*)?(?:" + _k("삭제", "지워", "제거", "없애") + ")",
    ),
    # list
    (
        "list",
        r"(?:list|show|display)(?:\s+me)?(?:\s+(?:all|every))?(?:\s+(?:of\s+)?the)?"
        r"(?:\s+project'?s?)?\s+files(?:\s+(?:in|under|inside)\s+(?:the\s+)?{P:where}"
        r"(?:\s+(?:folder|directory))?|\s+(?:in|of)\s+the\s+project)?",
    ),
    ("list", r"(?:list|ls)(?:\s+(?:the\s+)?{P:where})?"),
    ("list", r"what\s+files\s+(?:are\s+)?(?:there|exist|in\s+(?:the\s+)?(?:project|{P:where}))"),
    (
        "list",
        r"(?:(?:{P:where}(?:\s*(?:폴더|디렉터리|디렉토리))?|프로젝트)"
        r"\s*(?:의|에 있는|안의|안에 있는)?\s*)?(?:모든\s*)?파일(?:\s*목록|들|\s*리스트)?"
        r"(?:{OBJ}(?:" + _k("보여", "알려", "나열", "출력") + "))?",
    ),
    # create with given content
    (
        "create",
        r"(?:create|make|add|write|save)(?:\s+(?:a|an|the))?(?:\s+new)?(?:\s+file)?"
        r"(?:\s+(?:called|named|at))?\s+{P:dst}(?:\s+file)?\s*,?\s*(?:containing|with(?:\s+(?:the\s+)?"
        r"(?:content|contents|text|body))?|that\s+(?:says|contains|reads)|saying|whose\s+content\s+is)"
        r"\s*:?\s*{C:content}",
    ),
    (
        "create",
        r"(?:create|make|add|write|save)(?:\s+(?:a|an|the))?(?:\s+new)?(?:\s+file)?"
        r"(?:\s+(?:called|named|at))?\s+{P:dst}(?:\s+file)?\s*:?\s*⟨(?P<content>F\d+)⟩",
    ),
    (
        "create",
        r"(?:write|save|put)\s+{C:content}\s+(?:to|into|in|as)\s+(?:(?:a|the)\s+)?(?:new\s+)?"
        r"(?:file\s+)?{P:dst}",
    ),
    (
        "empty",
        r"(?:create|make|add|touch)(?:\s+(?:a|an))?(?:\s+new)?\s+empty\s+(?:file\s+)?{P:dst}"
        r"(?:\s+file)?",
    ),
    ("empty", r"touch\s+{P:dst}"),
    (
        "create",
        r"{P:dst}(?:\s*파일)?{OBJ}(?:(?:내용(?:은|을|이)?|다음\s*내용(?:으로)?)\s*:?\s*)?"
        r"{C:content}(?:\s*(?:라고|이라고|라는\s*내용으로|이라는\s*내용으로|내용으로|으로|로))?\s*(?:(?:넣어서|"
        r"채워서|넣고)\s*)?(?:" + _k("만들어", "생성", "작성", "써") + ")",
    ),
    (
        "create",
        r"{C:content}(?:\s*(?:라는|이라는)?\s*(?:내용(?:으로|의|을\s*담은)?))?\s*{P:dst}"
        r"(?:\s*파일)?(?:을|를|에|으로|로)?\s*(?:"
        + _k("만들어", "생성", "작성", "써", "저장")
        + ")",
    ),
    ("empty", r"빈\s*파일\s*{P:dst}{OBJ}(?:" + _k("만들어", "생성") + ")"),
    (
        "empty",
        r"{P:dst}(?:\s*(?:을|를|에|으로|로))?\s*빈\s*파일(?:을|를|로)?\s*(?:"
        + _k("만들어", "생성")
        + ")",
    ),
    # structural summary
    (
        "summary",
        r"(?:summarize|summarise|(?:give|show)(?:\s+me)?\s+(?:a|an)\s+(?:structural\s+)?"
        r"(?:summary|overview)\s+of|(?:an?\s+)?(?:summary|overview)\s+of)(?:\s+(?:the|this))?\s+"
        r"(?:{PS:where}(?:\s+(?:folder|directory|file|files))?|{PROJECT}|files)",
    ),
    (
        "summary",
        r"(?:summarize|summarise|(?:the\s+)?(?:project|codebase|repo)\s+(?:summary|overview))",
    ),
    (
        "summary",
        r"(?:{PS:where}|(?:이\s*)?(?:프로젝트|코드베이스|저장소|레포)(?:\s*구조)?|전체\s*코드)"
        r"(?:를|을|의)?\s*(?:(?:구조|개요)(?:를|을)?\s*)?(?:"
        + _k("요약", "보여", "알려", "정리")
        + ")",
    ),
    ("summary", r"(?:프로젝트|코드베이스)\s*(?:요약|개요)"),
]


@functools.cache
def _compiled() -> list[tuple[str, re.Pattern[str]]]:
    """The forms compiled on first use (~50 ms): start-up and an idle server skip it."""
    return [(kind, _expand(form)) for kind, form in _FORMS]


_LEAD_EN = re.compile(
    r"^(?:(?:please|pls|kindly|hey|ok(?:ay)?|now|can\s+you|could\s+you|would\s+you|will\s+you|"
    r"i\s+(?:want|need)\s+(?:you\s+)?to|i'?d\s+like\s+(?:you\s+)?to|let'?s|go\s+ahead\s+and)"
    r"[\s,]+)+",
    re.I,
)
_TAIL = re.compile(r"(?:[\s,]+(?:please|for\s+me|thanks|thank\s+you))*[\s.!?~]*$", re.I)


def normalize(skeleton: str) -> str:
    """The skeleton without politeness: "please", "can you", "좀", trailing punctuation."""
    text = re.sub(r"(?<!\S)좀(?!\S)", " ", skeleton)
    text = _LEAD_EN.sub("", " ".join(text.split()))
    return _TAIL.sub("", text).strip()


def _literal(raw: str, tokens: Tokens) -> str | None:
    """The text of a captured ``{Q}`` (digits), ``{I}`` (identifier or ``⟨Q0⟩``) group."""
    if raw.isdigit():
        return tokens.literals[int(raw)]
    if raw.startswith("⟨Q"):
        return tokens.literals[int(raw[2:-1])]
    return raw


def _identifier(raw: str, tokens: Tokens) -> str | None:
    value = _literal(raw, tokens)
    return value if value is not None and IDENT_RE.fullmatch(value) else None


def _targets(raw: str | None, tokens: Tokens) -> tuple[str, ...]:
    if not raw:
        return ()
    if raw.isdigit():
        return (tokens.paths[int(raw)],)
    return tuple(tokens.paths[int(n)] for n in re.findall(r"⟨P(\d+)⟩", raw))


def _build(kind: str, match: re.Match[str], tokens: Tokens) -> Operation | None:
    groups = match.groupdict()
    where = _targets(groups.get("where"), tokens)
    if kind in ("search", "regex"):
        value = _literal(groups["old"], tokens)
        return (
            Operation("search", old=value, targets=where, regex=kind == "regex") if value else None
        )
    if kind == "replace":
        old = tokens.literals[int(groups["old"])]
        new = tokens.literals[int(groups["new"])]
        return Operation("replace", old=old, new=new, targets=where) if old and old != new else None
    if kind == "rename":
        old_id, new_id = _identifier(groups["old"], tokens), _identifier(groups["new"], tokens)
        if old_id is None or new_id is None or old_id == new_id:
            return None
        return Operation("rename", old=old_id, new=new_id, targets=where)
    if kind == "move":
        src, dst = tokens.paths[int(groups["src"])], tokens.paths[int(groups["dst"])]
        return Operation("move", targets=(src,), dest=dst) if src != dst else None
    if kind in ("delete", "list", "summary"):
        return Operation(kind, targets=where)
    dst = tokens.paths[int(groups["dst"])]
    if dst.endswith("/"):
        return None
    if kind == "empty":
        return Operation("create", targets=(dst,), content="")
    raw = groups["content"]
    if raw.startswith("F"):
        content = tokens.fences[int(raw[1:])]
    else:
        literal = tokens.literals[int(raw[1:])]
        content = literal if literal.endswith("\n") or not literal else literal + "\n"
    return Operation("create", targets=(dst,), content=content)


def parse(prompt: str, files: Sequence[str]) -> Operation | None:
    """The operation the whole of ``prompt`` asks for, or None (a model is needed)."""
    tokens = tokenize(prompt, files)
    if "⟨URL⟩" in tokens.skeleton or len(tokens.skeleton) > MAX_SKELETON:
        return None
    text = normalize(tokens.skeleton)
    for kind, pattern in _compiled():
        match = pattern.fullmatch(text)
        if match is not None:
            return _build(kind, match, tokens)
    return None
