"""The offline planning corpus: realistic prompts (English and Korean) against a small Express
project, through the real server on both databases.

Every prompt runs as ``POST /api/workflow/runs`` on a fresh copy of the project. The run ends
either exactly right (every file checked byte for byte, search/list/summary outputs checked)
or failed with ``model_required`` and no file changed; ``POST /api/workflow/plan`` answers
the latter with 422 ``model_required``. Never a run that "succeeds" with damage or canned text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.ai.offline_project import PROJECT
from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from tests.fixtures.server import AuthedUser

TERMINAL = {"run.succeeded", "run.failed", "run.cancelled"}
Files = dict[str, str]


@dataclass
class Case:
    prompt: str
    files: Callable[[Files], Files] | None = None  # None: model_required, nothing changes
    output: Callable[[dict[str, Any]], None] | None = None  # checks the last step's output
    tools: set[str] = field(default_factory=set)


def edit(path: str, old: str, new: str, count: int) -> Callable[[Files], Files]:
    def change(files: Files) -> Files:
        assert files[path].count(old) == count, (path, old)
        return {**files, path: files[path].replace(old, new)}

    return change


def chain(*changes: Callable[[Files], Files]) -> Callable[[Files], Files]:
    def change(files: Files) -> Files:
        for one in changes:
            files = one(files)
        return files

    return change


def move(src: str, dst: str) -> Callable[[Files], Files]:
    def change(files: Files) -> Files:
        moved = {k: v for k, v in files.items() if k != src}
        moved[dst] = files[src]
        return moved

    return change


def delete(path: str) -> Callable[[Files], Files]:
    return lambda files: {k: v for k, v in files.items() if k != path}


def create(path: str, content: str) -> Callable[[Files], Files]:
    return lambda files: {**files, path: content}


def unchanged(files: Files) -> Files:
    return files


def matches(pattern: str, prefix: str = "") -> Callable[[dict[str, Any]], None]:
    """The search output equals what Python's ``re`` finds line by line (the oracle)."""

    def check(output: dict[str, Any]) -> None:
        expected = sorted(
            (path, number)
            for path, text in PROJECT.items()
            if path.startswith(prefix)
            for number, line in enumerate(text.splitlines(), start=1)
            if re.search(pattern, line)
        )
        assert expected, "the oracle must find something"
        assert sorted((m["path"], m["line"]) for m in output["matches"]) == expected
        assert output["truncated"] is False

    return check


def listed(prefix: str) -> Callable[[dict[str, Any]], None]:
    def check(output: dict[str, Any]) -> None:
        paths = [f["path"] for f in output["files"]]
        assert paths == sorted(p for p in PROJECT if p.startswith(prefix))
        sizes = {f["path"]: f["size"] for f in output["files"]}
        assert all(sizes[p] == len(PROJECT[p].encode()) for p in paths)

    return check


def summarized(output: dict[str, Any]) -> None:
    assert output["total_files"] == len(PROJECT)
    assert output["total_bytes"] == sum(len(t.encode()) for t in PROJECT.values())
    assert output["total_lines"] == sum(len(t.splitlines()) for t in PROJECT.values())
    languages = {x["language"]: x["files"] for x in output["languages"]}
    assert languages == {"JavaScript": 6, "Markdown": 2, "JSON": 1}
    symbols = {f["path"]: f["symbols"] for f in output["files"]}
    assert symbols["src/routes/users.js"] == ["getUser", "listUsers"]
    assert symbols["src/utils.js"] == ["formatName", "isEmpty"]
    assert symbols["src/app.js"] == ["GET /users", "GET /users/:id", "USE /posts"]
    assert symbols["src/routes/posts.js"] == ["GET /", "POST /"]
    assert "src/routes/users.js (JavaScript, 16 lines" in output["text"]


HEALTH_JS = 'module.exports = (req, res) => res.json({ ok: true });\n\n// "quoted" stays as is\n'

CORPUS: list[Case] = [
    # searches
    Case('find "TODO" in src/', unchanged, matches("TODO", "src/"), {"vfs.search"}),
    Case('"TODO" 검색해줘', unchanged, matches("TODO"), {"vfs.search"}),
    Case(
        'search for regex "app\\.(get|use)\\("',
        unchanged,
        matches(r"app\.(get|use)\("),
        {"vfs.search"},
    ),
    Case(
        'routes 폴더에서 "res.json" 찾아줘',
        unchanged,
        matches(r"res\.json", "src/routes/"),
        {"vfs.search"},
    ),
    Case("where is formatName used?", unchanged, matches("formatName"), {"vfs.search"}),
    # replaces of quoted text
    Case(
        'replace "3000" with "8080" in src/config.js',
        edit("src/config.js", "3000", "8080", 1),
        tools={"text.replace"},
    ),
    Case(
        'README.md에서 "npm start"를 "npm run dev"로 바꿔줘',
        edit("README.md", "npm start", "npm run dev", 1),
        tools={"text.replace"},
    ),
    Case(
        'Please replace "res.json" with "res.send" in src/routes/',
        chain(
            edit("src/routes/users.js", "res.json", "res.send", 2),
            edit("src/routes/posts.js", "res.json", "res.send", 1),
        ),
        tools={"text.replace"},
    ),
    # identifier renames across files: not inside strings or comments, not in Markdown
    Case(
        "rename getUser to fetchUser across the project",
        chain(
            edit("src/app.js", "{ getUser,", "{ fetchUser,", 1),
            edit("src/app.js", ", getUser)", ", fetchUser)", 1),
            edit("src/routes/users.js", "function getUser(", "function fetchUser(", 1),
            edit("src/routes/users.js", "{ getUser,", "{ fetchUser,", 1),
        ),
        tools={"code.rename"},
    ),
    Case(
        "rename the function formatName to formatFullName in src/",
        chain(
            edit("src/routes/users.js", "formatName", "formatFullName", 3),
            edit("src/utils.js", "formatName", "formatFullName", 2),
        ),
        tools={"code.rename"},
    ),
    Case(
        "src/에서 isEmpty를 isBlank로 이름 바꿔줘",
        edit("src/utils.js", "isEmpty", "isBlank", 2),
        tools={"code.rename"},
    ),
    Case(
        "`PORT` 변수 이름을 `HTTP_PORT`로 바꿔줘",
        chain(
            edit("src/app.js", "PORT", "HTTP_PORT", 3),
            edit("src/config.js", "const PORT", "const HTTP_PORT", 1),  # not process.env.PORT
            edit("src/config.js", "{ PORT }", "{ HTTP_PORT }", 1),
        ),
        tools={"code.rename"},
    ),
    # moves, deletes, lists
    Case(
        "move src/utils.js to src/lib/utils.js",
        move("src/utils.js", "src/lib/utils.js"),
        tools={"vfs.move"},
    ),
    Case(
        "README.md를 docs/README.md로 옮겨줘",
        move("README.md", "docs/README.md"),
        tools={"vfs.move"},
    ),
    Case(
        "rename docs/api.md to docs/endpoints.md",
        move("docs/api.md", "docs/endpoints.md"),
        tools={"vfs.move"},
    ),
    Case("delete test/app.test.js", delete("test/app.test.js"), tools={"vfs.delete"}),
    Case("utils.js 파일 삭제해줘", delete("src/utils.js"), tools={"vfs.delete"}),
    Case("list the files in src/", unchanged, listed("src/"), {"vfs.list"}),
    Case("파일 목록 보여줘", unchanged, listed(""), {"vfs.list"}),
    # files whose content the prompt gives
    Case(
        'create docs/changelog.md containing "# Changelog"',
        create("docs/changelog.md", "# Changelog\n"),
        tools={"vfs.write"},
    ),
    Case(
        f"create src/health.js with:\n```js\n{HEALTH_JS}```",
        create("src/health.js", HEALTH_JS),
        tools={"vfs.write"},
    ),
    Case(
        'notes/todo.md 파일을 "배포 전에 테스트하기" 내용으로 만들어줘',
        create("notes/todo.md", "배포 전에 테스트하기\n"),
        tools={"vfs.write"},
    ),
    # structural summaries
    Case("summarize the project", unchanged, summarized, {"project.summary"}),
    Case("프로젝트 요약해줘", unchanged, summarized, {"project.summary"}),
    # what needs a model: model_required, nothing written
    Case("refactor src/utils.js to use arrow functions"),
    Case("add tests for src/routes/"),
    Case("explain how the users route works"),
    Case("translate README.md into Korean"),
    Case("write a README and a CHANGELOG"),
    Case("remove the console.log calls from src/app.js"),
    Case("create docs/architecture.md describing the architecture"),
    Case("fix the bug in getUser"),
    Case("src/app.js에 인증 미들웨어 추가해줘"),
    Case("users.js에 입력 검증 추가해줘"),
    Case("README를 더 자세하게 써줘"),
    Case("모든 핸들러에 에러 처리 추가해줘"),
]


async def upload(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> None:
    for path, text in PROJECT.items():
        response = await client.put(
            f"/api/projects/{pid}/files/{path}", content=text.encode(), headers=user.headers
        )
        assert response.status_code == 201, response.text


async def project_files(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> Files:
    listing = await client.get(f"/api/projects/{pid}/files?limit=200", headers=user.headers)
    assert listing.status_code == 200
    files: Files = {}
    for item in listing.json()["items"]:
        response = await client.get(
            f"/api/projects/{pid}/files/{item['path']}", headers=user.headers
        )
        assert response.status_code == 200
        files[item["path"]] = response.content.decode("utf-8")
    return files


async def run_to_end(
    client: httpx.AsyncClient, user: AuthedUser, pid: str, prompt: str
) -> dict[str, Any]:
    """Submit the prompt with an SSE subscriber open; the run once its terminal event came."""
    async with open_stream(client, pid, headers=user.headers) as sse:
        await sse.started()
        response = await client.post(
            "/api/workflow/runs", json={"project_id": pid, "prompt": prompt}, headers=user.headers
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        while True:
            message = await sse.next()
            if message.event in TERMINAL and json.loads(message.data)["run_id"] == run_id:
                break
    final = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
    assert final.status_code == 200
    body: dict[str, Any] = final.json()
    return body


async def check_case(client: httpx.AsyncClient, user: AuthedUser, case: Case) -> None:
    pid = await create_project(client, user, name="corpus")
    await upload(client, user, pid)
    run = await run_to_end(client, user, pid, case.prompt)
    after = await project_files(client, user, pid)
    if case.files is None:
        assert run["status"] == "failed", run
        assert run["error"]["code"] == "model_required", run["error"]
        assert "STRETTO_GEMINI_API_KEY" in run["error"]["message"]
        assert run["steps"] == []
        assert after == PROJECT, "a model_required run changed files"
        planned = await client.post(
            "/api/workflow/plan",
            json={"project_id": pid, "prompt": case.prompt},
            headers=user.headers,
        )
        assert planned.status_code == 422, planned.text
        assert planned.json()["error"]["code"] == "model_required"
        return
    assert run["status"] == "succeeded", run
    tools = {step["tool"] for step in run["steps"]}
    assert tools == case.tools, tools
    assert not tools & {"ai.generate", "ai.edit"}
    assert after == case.files(dict(PROJECT))
    if case.output is not None:
        case.output(run["steps"][-1]["output"])


def test_the_corpus_is_large_and_bilingual() -> None:
    korean = [c for c in CORPUS if re.search(r"[가-힣]", c.prompt)]
    assert len(CORPUS) >= 25
    assert len(korean) >= 8
    assert sum(c.files is None for c in CORPUS) >= 8


async def test_every_corpus_prompt_is_exact_or_model_required(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    failures: list[str] = []
    for case in CORPUS:
        try:
            await check_case(client, user, case)
        except AssertionError as exc:
            failures.append(f"{case.prompt!r}: {exc}")
    assert not failures, "\n".join(failures)
