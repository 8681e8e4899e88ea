"""The exact tools the offline planner uses (``text.replace``, ``code.rename``,
``project.summary``) on real files through the real ``FileService`` (SQLite), and the code
scanner behind ``code.rename``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from server.ai.offline import OfflineProvider
from server.errors import ToolError
from server.workflow.tools.ai_tools import ai_tools
from server.workflow.tools.code_scan import rename_identifier
from server.workflow.tools.defaults import default_registry
from tests.ai.offline_project import PROJECT

if TYPE_CHECKING:
    from tests.ai.conftest import Project

REGISTRY = default_registry()


async def run(name: str, project: Project, **args: Any) -> dict[str, Any]:
    tool = REGISTRY.get(name)
    assert tool is not None
    assert not tool.check_args or not tool.check_args(args)
    return await tool.run(project.context(None), args)


async def upload(project: Project) -> None:
    for path, text in PROJECT.items():
        await project.put(path, text)


@pytest.mark.parametrize(
    ("family", "before", "after", "count"),
    [
        (
            "js",
            'foo(); "foo"; // foo\n/* foo */ x.foo; {foo}',
            'bar(); "foo"; // foo\n/* foo */ x.foo; {bar}',
            2,
        ),
        ("js", "`a ${foo + `${foo}`} foo`", "`a ${bar + `${bar}`} foo`", 2),
        ("js", "x = /foo'/; foo", "x = /foo'/; bar", 1),
        ("js", "a = b / foo / 2; 'it''s foo'", "a = b / bar / 2; 'it''s foo'", 1),
        ("js", "foobar; _foo; foo$; $foo; ...foo", "foobar; _foo; foo$; $foo; ...bar", 1),
        (
            "python",
            'foo = "foo"  # foo\nf"{foo} foo {{foo}}"',
            'bar = "foo"  # foo\nf"{bar} foo {{foo}}"',
            2,
        ),
        ("python", "'''foo\n''' + foo + rb'foo'", "'''foo\n''' + bar + rb'foo'", 1),
        ("go", "foo := `foo` + \"foo\" + 'f' // foo", "bar := `foo` + \"foo\" + 'f' // foo", 1),
        (
            "rust",
            "fn foo<'a>(x: &'a str) { let c = 'f'; r#\"foo\"#; foo() }",
            "fn bar<'a>(x: &'a str) { let c = 'f'; r#\"foo\"#; bar() }",
            2,
        ),
        ("rust", "/* a /* foo */ foo */ foo", "/* a /* foo */ foo */ bar", 1),
        (
            "c",
            'int foo = 1; char c = \'"\'; char *s = "foo"; foo++;',
            'int bar = 1; char c = \'"\'; char *s = "foo"; bar++;',
            2,
        ),
        ("c", 'String t = """\n foo " \n"""; foo();', 'String t = """\n foo " \n"""; bar();', 1),
    ],
)
def test_rename_touches_code_only(family: str, before: str, after: str, count: int) -> None:
    assert rename_identifier(before, family, "foo", "bar") == (after, count)


def test_unterminated_strings_do_not_crash_the_scanner() -> None:
    for family in ("js", "python", "go", "rust", "c"):
        for text in ('foo "unterminated', "foo `x ${foo", "foo /* open", "foo '"):
            renamed, _ = rename_identifier(text, family, "foo", "bar")
            assert renamed.startswith("bar")
    assert rename_identifier('f"{foo', "python", "foo", "bar") == ('f"{bar', 1)


async def test_text_replace_in_a_file_counts_and_writes(project: Project) -> None:
    await upload(project)
    out = await run(
        "text.replace", project, old="res.json", new="res.send", path="src/routes/users.js"
    )
    assert out["replacements"] == 2
    assert [f["path"] for f in out["files"]] == ["src/routes/users.js"]
    expected = PROJECT["src/routes/users.js"].replace("res.json", "res.send")
    assert await project.text("src/routes/users.js") == expected
    assert await project.text("src/routes/posts.js") == PROJECT["src/routes/posts.js"]


async def test_text_replace_across_the_project_writes_only_changed_files(project: Project) -> None:
    await upload(project)
    versions = {p: (await project.files.read(project.id, p)).meta.version for p in PROJECT}
    out = await run("text.replace", project, old="TODO", new="FIXME")
    assert sorted(f["path"] for f in out["files"]) == [
        "README.md",
        "src/app.js",
        "src/routes/posts.js",
    ]
    assert out["files_scanned"] == len(PROJECT)
    for path, text in PROJECT.items():
        assert await project.text(path) == text.replace("TODO", "FIXME")
        changed = "TODO" in text
        version = (await project.files.read(project.id, path)).meta.version
        assert (version != versions[path]) == changed, path


async def test_text_replace_of_missing_text_changes_nothing(project: Project) -> None:
    await upload(project)
    out = await run("text.replace", project, old="no such text", new="x", prefix="src/")
    assert out == {"files": [], "replacements": 0, "files_scanned": 5}
    assert await project.text("src/app.js") == PROJECT["src/app.js"]


async def test_text_replace_refuses_a_binary_file_and_a_missing_one(project: Project) -> None:
    await project.files.write(project.id, "blob.bin", b"\xff\xfe\x00")
    with pytest.raises(ToolError) as caught:
        await run("text.replace", project, old="a", new="b", path="blob.bin")
    assert caught.value.code == "binary_file"
    with pytest.raises(ToolError) as caught:
        await run("text.replace", project, old="a", new="b", path="nope.txt")
    assert caught.value.code == "not_found"


async def test_code_rename_reports_per_file_counts_and_skips_other_files(project: Project) -> None:
    await upload(project)
    out = await run("code.rename", project, old="getUser", new="fetchUser")
    assert {f["path"]: f["replacements"] for f in out["files"]} == {
        "src/app.js": 2,
        "src/routes/users.js": 2,
    }
    assert out["skipped"] == ["README.md", "docs/api.md", "package.json"]
    users = await project.text("src/routes/users.js")
    assert "function fetchUser(" in users
    assert '"getUser: not found"' in users  # strings untouched
    assert "/* getUser answers" in users  # comments untouched
    assert await project.text("docs/api.md") == PROJECT["docs/api.md"]
    assert await project.text("test/app.test.js") == PROJECT["test/app.test.js"]


def test_rename_and_scope_checks_at_plan_time() -> None:
    rename = REGISTRY.get("code.rename")
    assert rename is not None
    assert rename.check_args is not None
    assert "new" in rename.check_args({"old": "a", "new": "a"})
    assert "path" in rename.check_args({"old": "a", "new": "b", "path": "x", "prefix": "y/"})


async def test_project_summary_of_one_file(project: Project) -> None:
    await upload(project)
    out = await run("project.summary", project, path="src/utils.js")
    assert out["total_files"] == 1
    assert out["files"] == [
        {
            "path": "src/utils.js",
            "size": len(PROJECT["src/utils.js"].encode()),
            "lines": 7,
            "language": "JavaScript",
            "symbols": ["formatName", "isEmpty"],
        }
    ]
    assert out["text"].startswith("1 files, ")


async def test_offline_ai_edit_in_a_given_plan_never_guesses(project: Project) -> None:
    """A free-form instruction fails the step with model_required; the file is untouched."""
    edit = {tool.name: tool for tool in ai_tools()}["ai.edit"]
    await project.put("src/utils.js", PROJECT["src/utils.js"])
    context = project.context(OfflineProvider())
    for instruction in ("refactor this to use arrow functions", "make it uppercase"):
        with pytest.raises(ToolError) as caught:
            await edit.run(context, {"path": "src/utils.js", "instruction": instruction})
        assert caught.value.code == "model_required"
        assert not caught.value.retryable
    assert await project.text("src/utils.js") == PROJECT["src/utils.js"]
    out = await edit.run(context, {"path": "src/utils.js", "instruction": 'append "// end"'})
    assert out["changed"] is True
    assert await project.text("src/utils.js") == PROJECT["src/utils.js"] + "// end\n"
