"""The Gemini half of the planning corpus: realistic prompts (English and Korean) on a small
Express project, each with the model's scripted replies and the files it must leave.

A case scripts what Gemini answers, in the order stretto asks: the intent, the plan (after
``rejected`` plans the validator refuses: one repair round), then the generations (``replies``
in order; ``edits`` and ``keyed`` by what the request holds, for calls made in parallel).
``changes`` is how the project's files must differ from ``BASE`` afterwards (None: deleted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

BASE: dict[str, str] = {
    "package.json": (
        '{\n  "name": "shop-api",\n  "version": "1.0.0",\n'
        '  "scripts": {\n    "start": "node src/app.js"\n  }\n}\n'
    ),
    "src/app.js": (
        "const express = require('express');\n"
        "const users = require('./routes/users');\n"
        "const orders = require('./routes/orders');\n\n"
        "const app = express();\napp.use(express.json());\n"
        "app.use('/users', users);\napp.use('/orders', orders);\n\nmodule.exports = app;\n"
    ),
    "src/routes/users.js": (
        "const router = require('express').Router();\n"
        "const { getUser, createUser } = require('../handlers/users');\n\n"
        "router.get('/:id', getUser);\nrouter.post('/', createUser);\n\n"
        "module.exports = router;\n"
    ),
    "src/routes/orders.js": (
        "const router = require('express').Router();\n"
        "const { getOrder } = require('../handlers/orders');\n\n"
        "router.get('/:id', getOrder);\n\nmodule.exports = router;\n"
    ),
    "src/handlers/users.js": (
        "const { fetchUser } = require('../utils');\n\n"
        "async function getUser(req, res) {\n  const user = await fetchUser(req.params.id);\n"
        "  res.json(user);\n}\n\n"
        "async function createUser(req, res) {\n  res.status(201).json(req.body);\n}\n\n"
        "module.exports = { getUser, createUser };\n"
    ),
    "src/handlers/orders.js": (
        "const { fetchUser } = require('../utils');\n\n"
        "async function getOrder(req, res) {\n  const user = await fetchUser(req.query.user);\n"
        "  res.json({ id: req.params.id, user });\n}\n\nmodule.exports = { getOrder };\n"
    ),
    "src/utils.js": (
        "// TODO: cache users\nasync function fetchUser(id) {\n  return { id };\n}\n\n"
        "function formatDate(d) {\n  return d.toISOString().slice(0, 10);\n}\n\n"
        "module.exports = { fetchUser, formatDate };\n"
    ),
    "README.md": "# shop-api\n\nA small Express API for users and orders.\n",
    "CHANGELOG.md": "# Changelog\n\n## 1.0.0\n- First release\n",
    "tests/legacy.test.js": "// TODO: remove\n",
}
HANDLERS = ("src/handlers/orders.js", "src/handlers/users.js")  # listing order
FETCH_USER_FILES = ("src/handlers/orders.js", "src/handlers/users.js", "src/utils.js")


@dataclass(frozen=True)
class Case:
    name: str
    prompt: str
    intent: dict[str, Any]
    plan: dict[str, Any]
    rejected: tuple[Any, ...] = ()
    replies: tuple[str, ...] = ()
    edits: dict[str, str] = field(default_factory=dict)
    keyed: dict[str, str] = field(default_factory=dict)
    changes: dict[str, str | None] = field(default_factory=dict)
    fanout: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> output subset


# -- plan builders ------------------------------------------------------------------------------
def step(
    step_id: str, tool: str, args: dict[str, Any], needs: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    return {"id": step_id, "tool": tool, "args": args, "needs": list(needs), **extra}


def read(step_id: str, path: str) -> dict[str, Any]:
    return step(step_id, "vfs.read", {"path": path})


def write(step_id: str, path: str, content: str, needs: tuple[str, ...]) -> dict[str, Any]:
    return step(step_id, "vfs.write", {"path": path, "content": content}, needs)


def gen(step_id: str, prompt: str, needs: tuple[str, ...] = (), **args: Any) -> dict[str, Any]:
    return step(step_id, "ai.generate", {"prompt": prompt, **args}, needs)


def edit(step_id: str, path: str, instruction: str) -> dict[str, Any]:
    return step(step_id, "ai.edit", {"path": path, "instruction": instruction})


def fan_edit(step_id: str, source: str, path: str, instruction: str, need: str) -> dict[str, Any]:
    return step(
        step_id,
        "ai.edit",
        {"path": path, "instruction": instruction},
        (need,),
        for_each=source,
    )


def plan(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"steps": list(steps)}


def intent(kind: str, targets: list[str], summary: str) -> dict[str, Any]:
    return {"intent": kind, "confidence": 0.9, "summary": summary, "targets": targets}


def chain(path_in: str, instruction: str, path_out: str) -> dict[str, Any]:
    """read -> generate -> write, through templates."""
    return plan(
        read("read", path_in),
        gen("draft", f"{instruction}\n\n{{{{steps.read.output.content}}}}", ("read",)),
        write("save", path_out, "{{steps.draft.output.text}}", ("draft",)),
    )


def renamed(path: str, old: str, new: str) -> str:
    return BASE[path].replace(old, new)


# -- contents the model "writes" -----------------------------------------------------------------
UTILS_TESTS = (
    "const { formatDate } = require('../src/utils');\n\n"
    "test('formatDate', () => {\n"
    "  expect(formatDate(new Date('2026-01-02T03:04:05Z'))).toBe('2026-01-02');\n});\n"
)
ARCHITECTURE = (
    "# Architecture\n\nsrc/app.js mounts two routers (users, orders); the routers call "
    "handlers in src/handlers, which use helpers from src/utils.js.\n"
)
APP_WITH_HEALTH = BASE["src/app.js"].replace(
    "\nmodule.exports = app;",
    "app.get('/health', (req, res) => res.json({ ok: true }));\n\nmodule.exports = app;",
)
APP_WITH_CORS = BASE["src/app.js"].replace(
    "app.use(express.json());", "app.use(require('cors')());\napp.use(express.json());"
)
UTILS_ARROWS = (
    "// TODO: cache users\nconst fetchUser = async (id) => ({ id });\n\n"
    "const formatDate = (d) => d.toISOString().slice(0, 10);\n\n"
    "module.exports = { fetchUser, formatDate };\n"
)
UTILS_JSDOC = (
    BASE["src/utils.js"]
    .replace("async function fetchUser", "/** Loads a user by id. */\nasync function fetchUser")
    .replace("function formatDate", "/** YYYY-MM-DD of a Date. */\nfunction formatDate")
)
README_KO = "# shop-api\n\n사용자와 주문을 위한 작은 Express API입니다.\n"
MIT = "MIT License\n\nCopyright (c) 2026 shop-api authors\n"
CHANGELOG_11 = "# Changelog\n\n## 1.1.0\n- Health check route\n\n## 1.0.0\n- First release\n"
PACKAGE_LINT = BASE["package.json"].replace(
    '"start": "node src/app.js"', '"start": "node src/app.js",\n    "lint": "eslint src"'
)
PACKAGE_110 = BASE["package.json"].replace('"1.0.0"', '"1.1.0"')
ROUTES_USERS_SLIM = BASE["src/routes/users.js"].replace("\nrouter.post('/', createUser);", "")


def validated(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return BASE[path].replace(
        "async function get",
        f"// validated ({name})\nasync function get",
    )


def with_errors_ko(path: str) -> str:
    return BASE[path].replace("module.exports", "// 에러 처리 추가됨\nmodule.exports")


def strict(path: str) -> str:
    return "'use strict';\n\n" + BASE[path]


def copyright_ko(path: str) -> str:
    return "// 저작권 (c) 2026 shop-api\n" + BASE[path]


SEARCH_FETCH_USER = step("search", "vfs.search", {"pattern": "\\bfetchUser\\b"})
LIST_HANDLERS = step("handlers", "vfs.list", {"prefix": "src/handlers/"})
RENAME = "Rename the identifier fetchUser to loadUser; change nothing else."
ONLY_EDIT_USERS = "Add input validation to the handler."

CASES: list[Case] = [
    Case(
        "edit-add-route",
        "Add a /health route to src/app.js that returns {ok: true}",
        intent("edit_files", ["src/app.js"], "Add a health route"),
        plan(edit("edit", "src/app.js", "Add GET /health returning {ok: true}")),
        edits={"src/app.js": APP_WITH_HEALTH},
        changes={"src/app.js": APP_WITH_HEALTH},
    ),
    Case(
        "refactor-arrows",
        "Refactor src/utils.js to use arrow functions",
        intent("edit_files", ["src/utils.js"], "Refactor utils"),
        plan(edit("edit", "src/utils.js", "Use arrow functions")),
        edits={"src/utils.js": "```js\n" + UTILS_ARROWS + "```\n"},  # fenced: stripped
        changes={"src/utils.js": UTILS_ARROWS},
    ),
    Case(
        "tests-chain",
        "Write unit tests for src/utils.js into tests/utils.test.js",
        intent("create_file", ["tests/utils.test.js"], "Unit tests for utils"),
        chain("src/utils.js", "Write Jest tests for this module:", "tests/utils.test.js"),
        replies=(UTILS_TESTS,),
        changes={"tests/utils.test.js": UTILS_TESTS},
    ),
    Case(
        "docs-architecture",
        "Create docs/architecture.md describing the project structure",
        intent("create_file", ["docs/architecture.md"], "Architecture doc"),
        plan(
            step("tree", "vfs.list", {}),
            gen("doc", "Describe this project: {{steps.tree.output.files}}", ("tree",)),
            write("save", "docs/architecture.md", "{{steps.doc.output.text}}", ("doc",)),
        ),
        replies=(ARCHITECTURE,),
        changes={"docs/architecture.md": ARCHITECTURE},
    ),
    Case(
        "rename-everywhere",
        "Rename fetchUser to loadUser everywhere",
        intent("edit_files", list(FETCH_USER_FILES), "Rename fetchUser"),
        plan(
            SEARCH_FETCH_USER,
            fan_edit("rename", "{{steps.search.output.files}}", "{{item}}", RENAME, "search"),
        ),
        edits={p: renamed(p, "fetchUser", "loadUser") for p in FETCH_USER_FILES},
        changes={p: renamed(p, "fetchUser", "loadUser") for p in FETCH_USER_FILES},
        fanout={"rename": 3},
    ),
    Case(
        "validate-every-handler",
        "Add input validation to every handler in src/handlers/",
        intent("edit_files", ["src/handlers/"], "Validate handler input"),
        plan(
            LIST_HANDLERS,
            fan_edit(
                "validate",
                "{{steps.handlers.output.files}}",
                "{{item.path}}",
                ONLY_EDIT_USERS,
                "handlers",
            ),
        ),
        edits={p: validated(p) for p in HANDLERS},
        changes={p: validated(p) for p in HANDLERS},
        fanout={"validate": 2},
    ),
    Case(
        "move-utils",
        "Move src/utils.js to src/lib/utils.js",
        intent("edit_files", ["src/utils.js", "src/lib/utils.js"], "Move utils"),
        plan(step("move", "vfs.move", {"from": "src/utils.js", "to": "src/lib/utils.js"})),
        changes={"src/utils.js": None, "src/lib/utils.js": BASE["src/utils.js"]},
    ),
    Case(
        "delete-legacy",
        "Delete the old tests/legacy.test.js",
        intent("edit_files", ["tests/legacy.test.js"], "Delete a test"),
        plan(step("delete", "vfs.delete", {"path": "tests/legacy.test.js"})),
        changes={"tests/legacy.test.js": None},
    ),
    Case(
        "search-todos",
        "Find all TODO comments",
        intent("search", ["src/"], "Find TODOs"),
        plan(step("todos", "vfs.search", {"pattern": "TODO"})),
        outputs={"todos": {"files": ["src/utils.js", "tests/legacy.test.js"]}},
    ),
    Case(
        "summarize",
        "Summarize what this project does",
        intent("explain", ["README.md"], "Summary"),
        plan(gen("summary", "Summarize the project.", context_paths=["README.md", "src/app.js"])),
        replies=("An Express API with user and order routes.",),
        outputs={"summary": {"text": "An Express API with user and order routes."}},
    ),
    Case(
        "ko-edit-cors",
        "src/app.js에 CORS 미들웨어를 추가해 줘",
        intent("edit_files", ["src/app.js"], "CORS 추가"),
        plan(edit("edit", "src/app.js", "CORS 미들웨어를 express.json() 앞에 추가")),
        edits={"src/app.js": APP_WITH_CORS},
        changes={"src/app.js": APP_WITH_CORS},
    ),
    Case(
        "ko-errors-every-handler",
        "src/handlers의 모든 핸들러에 에러 처리를 추가해 줘",
        intent("edit_files", ["src/handlers/"], "에러 처리"),
        plan(
            LIST_HANDLERS,
            fan_edit(
                "errors",
                "{{steps.handlers.output.files}}",
                "{{item.path}}",
                "try/catch로 에러 처리를 추가",
                "handlers",
            ),
        ),
        edits={p: with_errors_ko(p) for p in HANDLERS},
        changes={p: with_errors_ko(p) for p in HANDLERS},
        fanout={"errors": 2},
    ),
    Case(
        "ko-translate-readme",
        "README.md를 한국어로 번역해서 README.ko.md로 저장해 줘",
        intent("create_file", ["README.ko.md"], "README 번역"),
        chain("README.md", "한국어로 번역해 줘:", "README.ko.md"),
        replies=(README_KO,),
        changes={"README.ko.md": README_KO},
    ),
    Case(
        "ko-rename-everywhere",
        "fetchUser를 전부 getUserById로 바꿔 줘",
        intent("edit_files", list(FETCH_USER_FILES), "이름 변경"),
        plan(
            SEARCH_FETCH_USER,
            fan_edit(
                "rename",
                "{{steps.search.output.files}}",
                "{{item}}",
                "fetchUser 식별자를 getUserById로 변경",
                "search",
            ),
        ),
        edits={p: renamed(p, "fetchUser", "getUserById") for p in FETCH_USER_FILES},
        changes={p: renamed(p, "fetchUser", "getUserById") for p in FETCH_USER_FILES},
        fanout={"rename": 3},
    ),
    Case(
        "ko-tests-chain",
        "utils.js 테스트를 tests/utils.test.js에 작성해 줘",
        intent("create_file", ["tests/utils.test.js"], "테스트 작성"),
        chain("src/utils.js", "이 모듈의 Jest 테스트를 작성:", "tests/utils.test.js"),
        replies=(UTILS_TESTS,),
        changes={"tests/utils.test.js": UTILS_TESTS},
    ),
    Case(
        "ko-delete",
        "tests/legacy.test.js 파일을 삭제해 줘",
        intent("edit_files", ["tests/legacy.test.js"], "삭제"),
        plan(step("delete", "vfs.delete", {"path": "tests/legacy.test.js"})),
        changes={"tests/legacy.test.js": None},
    ),
    Case(
        "ko-rename-file",
        "src/routes/orders.js를 src/routes/order.js로 이름을 바꾸고 app.js의 require도 고쳐 줘",
        intent("edit_files", ["src/routes/orders.js", "src/app.js"], "파일 이름 변경"),
        plan(
            step("move", "vfs.move", {"from": "src/routes/orders.js", "to": "src/routes/order.js"}),
            edit("fix", "src/app.js", "require('./routes/orders')를 './routes/order'로"),
        ),
        edits={"src/app.js": renamed("src/app.js", "./routes/orders", "./routes/order")},
        changes={
            "src/routes/orders.js": None,
            "src/routes/order.js": BASE["src/routes/orders.js"],
            "src/app.js": renamed("src/app.js", "./routes/orders", "./routes/order"),
        },
    ),
    Case(
        "repair-missing-arg",
        "Add an MIT LICENSE file",
        intent("create_file", ["LICENSE"], "License"),
        plan(
            gen("text", "The MIT license text"),
            write("save", "LICENSE", "{{steps.text.output.text}}", ("text",)),
        ),
        rejected=(
            plan(
                gen("text", "The MIT license text"),
                step("save", "vfs.write", {"path": "LICENSE"}, ("text",)),
            ),
        ),
        replies=(MIT,),
        changes={"LICENSE": MIT},
    ),
    Case(
        "repair-reference-not-needed",
        "Add JSDoc comments to src/utils.js",
        intent("edit_files", ["src/utils.js"], "JSDoc"),
        plan(edit("doc", "src/utils.js", "Add JSDoc comments")),
        rejected=(
            plan(
                read("read", "src/utils.js"),
                write("save", "src/utils.js", "{{steps.read.output.content}}", ()),
            ),
        ),
        edits={"src/utils.js": UTILS_JSDOC},
        changes={"src/utils.js": UTILS_JSDOC},
    ),
    Case(
        "ko-repair-cycle",
        "package.json에 lint 스크립트를 추가해 줘",
        intent("edit_files", ["package.json"], "lint 스크립트"),
        plan(edit("edit", "package.json", "scripts에 lint: eslint src 추가")),
        rejected=(
            plan(
                step("a", "vfs.read", {"path": "package.json"}, ("b",)),
                step("b", "vfs.read", {"path": "package.json"}, ("a",)),
            ),
        ),
        edits={"package.json": PACKAGE_LINT},
        changes={"package.json": PACKAGE_LINT},
    ),
    Case(
        "repair-not-an-object",
        "Bump the version in package.json to 1.1.0",
        intent("edit_files", ["package.json"], "Bump version"),
        plan(edit("bump", "package.json", "Set version to 1.1.0")),
        rejected=(["not", "a", "plan"],),
        edits={"package.json": PACKAGE_110},
        changes={"package.json": PACKAGE_110},
    ),
    Case(
        "two-edits-in-parallel",
        "Move the createUser route out of src/routes/users.js and bump the version to 1.1.0",
        intent("edit_files", ["src/routes/users.js", "package.json"], "Two edits"),
        plan(
            edit("routes", "src/routes/users.js", "Remove the POST / route"),
            edit("version", "package.json", "Set version to 1.1.0"),
        ),
        edits={"src/routes/users.js": ROUTES_USERS_SLIM, "package.json": PACKAGE_110},
        changes={"src/routes/users.js": ROUTES_USERS_SLIM, "package.json": PACKAGE_110},
    ),
    Case(
        "gitignore-literal",
        "Add a .gitignore that ignores node_modules",
        intent("create_file", [".gitignore"], "gitignore"),
        plan(step("save", "vfs.write", {"path": ".gitignore", "content": "node_modules/\n"})),
        changes={".gitignore": "node_modules/\n"},
    ),
    Case(
        "changelog-chain",
        "Add a CHANGELOG entry for 1.1.0 (health check route) to CHANGELOG.md",
        intent("edit_files", ["CHANGELOG.md"], "Changelog"),
        chain("CHANGELOG.md", "Add a 1.1.0 entry (Health check route) on top:", "CHANGELOG.md"),
        replies=(CHANGELOG_11,),
        changes={"CHANGELOG.md": CHANGELOG_11},
    ),
    Case(
        "strict-every-route",
        "Add 'use strict' to every file in src/routes",
        intent("edit_files", ["src/routes/"], "use strict"),
        plan(
            step("routes", "vfs.list", {"prefix": "src/routes/"}),
            fan_edit(
                "strict",
                "{{steps.routes.output.files}}",
                "{{item.path}}",
                "Add 'use strict' at the top",
                "routes",
            ),
        ),
        edits={p: strict(p) for p in ("src/routes/orders.js", "src/routes/users.js")},
        changes={p: strict(p) for p in ("src/routes/orders.js", "src/routes/users.js")},
        fanout={"strict": 2},
    ),
    Case(
        "ko-copyright-every-handler",
        "src/handlers의 모든 파일 맨 위에 저작권 주석을 추가해 줘",
        intent("edit_files", ["src/handlers/"], "저작권 주석"),
        plan(
            LIST_HANDLERS,
            fan_edit(
                "copyright",
                "{{steps.handlers.output.files}}",
                "{{item.path}}",
                "맨 위에 저작권 주석 추가",
                "handlers",
            ),
        ),
        edits={p: copyright_ko(p) for p in HANDLERS},
        changes={p: copyright_ko(p) for p in HANDLERS},
        fanout={"copyright": 2},
    ),
    Case(
        "rename-then-summarize",
        "Rename fetchUser to loadUser everywhere, then note the change in CHANGES.md",
        intent("edit_files", [*FETCH_USER_FILES, "CHANGES.md"], "Rename and note"),
        plan(
            SEARCH_FETCH_USER,
            fan_edit("rename", "{{steps.search.output.files}}", "{{item}}", RENAME, "search"),
            gen("note", "Summarize these edits: {{steps.rename.output}}", ("rename",)),
            write("save", "CHANGES.md", "{{steps.note.output.text}}", ("note",)),
        ),
        edits={p: renamed(p, "fetchUser", "loadUser") for p in FETCH_USER_FILES},
        keyed={'"changed":true': "Renamed fetchUser to loadUser in 3 files.\n"},
        changes={
            **{p: renamed(p, "fetchUser", "loadUser") for p in FETCH_USER_FILES},
            "CHANGES.md": "Renamed fetchUser to loadUser in 3 files.\n",
        },
        fanout={"rename": 3},
    ),
]


def expected_files(case: Case) -> dict[str, str]:
    files = dict(BASE)
    for path, content in case.changes.items():
        if content is None:
            files.pop(path, None)
        else:
            files[path] = content
    return files


def for_each_steps(case: Case) -> list[str]:
    return [s["id"] for s in case.plan["steps"] if "for_each" in s]


def reply_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
