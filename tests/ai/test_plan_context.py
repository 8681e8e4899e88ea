"""The planner shows the model the file tree and the contents most relevant to the prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.ai.budget import named_paths, relevant_context
from server.config import Settings
from server.workflow.planner import Planner
from tests.ai.fake_gemini import json_reply

if TYPE_CHECKING:
    from server.ai.gemini import GeminiProvider
    from server.workflow.tools.registry import ToolRegistry
    from tests.ai.conftest import Project
    from tests.ai.fake_gemini import FakeGemini

INTENT = {"intent": "edit_files", "confidence": 0.9, "summary": "s", "targets": []}
PLAN = {"steps": [{"id": "l", "tool": "vfs.list", "args": {}, "needs": []}]}


def test_named_paths_are_found_in_prompt_order() -> None:
    paths = ["src/app.js", "src/utils.js", "README.md", "docs/a.md"]
    prompt = "refactor utils.js and then update src/app.js; README.md too (not readme.mdx)"
    assert named_paths(prompt, paths) == ["src/utils.js", "src/app.js", "README.md"]
    assert named_paths("src/app.jsx", paths) == []  # a longer name is another file
    assert named_paths("app.js에 검증 추가", paths) == ["src/app.js"]  # Korean particles


async def test_named_files_come_first_then_files_matching_words(project: Project) -> None:
    await project.put("src/app.js", "const app = express();\n")
    await project.put("src/users.js", "export function fetchUser(id) { return db.get(id) }\n")
    await project.put("src/orders.js", "import { fetchUser } from './users.js'\n")
    await project.put("src/unrelated.js", "console.log('nothing')\n")
    await project.put("logo.png", "\x89PNG")
    listing = [
        {"path": p, "size": len((await project.files.read(project.id, p)).content)}
        for p in ("logo.png", "src/app.js", "src/orders.js", "src/unrelated.js", "src/users.js")
    ]
    context = await relevant_context(
        project.files, project.id, "rename fetchUser in users.js to loadUser", listing, 10_000
    )
    # users.js is named; orders.js mentions fetchUser; the others match nothing.
    assert list(context.texts) == ["src/users.js", "src/orders.js"]
    assert context.texts["src/orders.js"] == "import { fetchUser } from './users.js'\n"
    assert context.omitted == []

    small = await relevant_context(
        project.files, project.id, "rename fetchUser in users.js to loadUser", listing, 60
    )
    assert list(small.texts) == ["src/users.js"]  # 53 bytes fit; orders.js would not
    assert small.omitted == ["src/orders.js"]
    assert small.bytes_loaded <= 60


async def test_the_plan_request_holds_the_tree_and_relevant_contents(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project, registry: ToolRegistry
) -> None:
    await project.put("src/handlers/users.js", "export function getUser(req, res) {}\n")
    await project.put("src/handlers/orders.js", "export function getOrder(req, res) {}\n")
    await project.put("big.txt", "handlers " * 200)
    await project.put("notes.md", "shopping list\n")
    fake_gemini.script(json_reply(INTENT), json_reply(PLAN))
    planner = Planner(
        provider=gemini,
        files=project.files,
        registry=registry,
        settings=Settings(ai_plan_context_bytes=200),
    )
    _intent, plan = await planner.analyze_and_plan(
        project.id, "add input validation to every handler in src/handlers/"
    )
    assert plan == PLAN
    sent = fake_gemini.requests[1].prompt_text
    assert "- src/handlers/users.js (37 bytes)" in sent  # the tree
    assert "- notes.md (14 bytes)" in sent
    assert "--- src/handlers/orders.js ---\nexport function getOrder(req, res) {}\n" in sent
    assert "--- src/handlers/users.js ---\nexport function getUser(req, res) {}\n" in sent
    assert "shopping list" not in sent  # not relevant
    assert "not included: over the context budget: big.txt" in sent  # relevant, too big
