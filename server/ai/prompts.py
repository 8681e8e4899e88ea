"""What stretto tells the model: system prompts, prompt builders and output schemas. Pure.

The offline provider reads none of this: it works from the calls' hints.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

INTENTS = ("create_file", "edit_files", "explain", "search", "generate", "unknown")
"""The closed set of intents."""

INTENT_SYSTEM = (
    "You classify requests made to a coding assistant that works on a project's files. "
    "Answer with JSON only. intent is one of: create_file (create one or more new files), "
    "edit_files (change existing files), explain (explain or summarize files or the "
    "project), search (find text in files), generate (write text that is not saved to a "
    "file), unknown. targets lists the project paths the request is about (existing files "
    "to edit or explain, new paths to create, a folder prefix ending in '/' to search). "
    "confidence is between 0 and 1; summary is one short sentence."
)

PLAN_SYSTEM = (
    "You plan the steps a workflow engine executes to fulfil a request on a project's "
    'files. Answer with JSON only: {"steps": [...]}. Each step has a unique id matching '
    "[a-z0-9_-]{1,64}, a tool from the catalog, args valid against that tool's args_schema, "
    "and needs (ids of the steps it waits for). Steps without a dependency between them run "
    "in parallel, so only list real dependencies. A string argument may embed the output of "
    "a step listed in its needs as {{steps.<id>.output}} or {{steps.<id>.output.<field>}}. "
    "Chain read -> generate -> write: vfs.read a file, ai.generate with "
    '"{{steps.<read>.output.content}}" in its prompt, vfs.write with content '
    '"{{steps.<generate>.output.text}}". ai.edit changes an existing file in place; '
    "vfs.read/vfs.list/vfs.search inspect the project; vfs.move and vfs.delete move and "
    "delete files. To do the same thing to many files, fan out: a step with "
    '"for_each": "{{steps.<id>.output.<list field>}}" runs once per item of that list '
    "(in parallel); its args use {{item}} or {{item.<field>}}, and <id> must be in its "
    'needs. For example "path": "{{item.path}}" over the files of vfs.list (objects), or '
    '"path": "{{item}}" over the files of vfs.search (paths, each once). A step that needs '
    "a for_each step gets the list of its items' outputs. Keep plans small."
)

FILE_CONTENT_SYSTEM = (
    "Write the complete content of the file {path} for the request. "
    "Return only the file content: no commentary, no Markdown code fences."
)

EXPLAIN_SYSTEM = (
    "Explain the given project files to a developer: what they do and how they fit "
    "together, briefly and concretely."
)

EDIT_SYSTEM = (
    "You edit one file of a project. Apply the instruction to the file and return the "
    "complete new content of the file, and nothing else: no commentary, no Markdown code "
    "fences. Keep everything the instruction does not ask to change."
)

INTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": list(INTENTS)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "summary": {"type": "string"},
        "targets": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["intent", "confidence", "summary", "targets"],
}


def file_content_system(path: str) -> str:
    return FILE_CONTENT_SYSTEM.format(path=path)


def plan_schema(tool_names: Sequence[str], max_steps: int) -> dict[str, Any]:
    """The structured-output schema of a plan (the validator still checks everything)."""
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
                        "tool": {"type": "string", "enum": list(tool_names)},
                        "args": {"type": "object"},
                        "needs": {"type": "array", "items": {"type": "string"}},
                        "timeout_s": {"type": "number"},
                        "retries": {"type": "integer"},
                        "continue_on_error": {"type": "boolean"},
                        "for_each": {"type": "string"},
                    },
                    "required": ["id", "tool", "args", "needs"],
                },
            }
        },
        "required": ["steps"],
    }


def listing_text(files: Sequence[Mapping[str, Any]], total: int | None) -> str:
    """The project's files for a prompt; ``total`` None means the listing was cut."""
    if not files:
        return "The project has no files yet."
    lines = [f"- {f['path']} ({f['size']} bytes)" for f in files]
    more = "; more files exist" if total is None else ""
    return "\n".join([f"Project files ({len(files)} shown{more}):", *lines])


def context_text(texts: Mapping[str, str], omitted: Sequence[str]) -> str:
    """The contents of the files a request is about, for the planner's prompt."""
    if not texts and not omitted:
        return "No file contents are included."
    parts = [f"Contents of the files most relevant to the request ({len(texts)} files):"]
    for path, text in texts.items():
        parts.append(f"--- {path} ---\n{text}")
    if omitted:
        shown = ", ".join(omitted[:50])
        parts.append(f"(also relevant, not included: over the context budget: {shown})")
    return "\n".join(parts)


def intent_prompt(prompt: str, listing: str) -> str:
    return f"Request:\n{prompt}\n\n{listing}"


def plan_prompt(
    prompt: str,
    intent: Mapping[str, Any],
    listing: str,
    catalog: Sequence[Mapping[str, Any]],
    max_steps: int,
    context: str = "",
) -> str:
    """The planning request: the user's words, the intent, the file tree, the relevant file
    contents (``context_text``), the tool catalog and the step bound."""
    tools = [
        {"name": t["name"], "description": t["description"], "args_schema": t["args_schema"]}
        for t in catalog
    ]
    return (
        f"Request:\n{prompt}\n\n"
        f"Intent analysis:\n{json.dumps(dict(intent), ensure_ascii=False)}\n\n"
        f"{listing}\n\n"
        f"{context + chr(10) + chr(10) if context else ''}"
        f"Tool catalog:\n{json.dumps(tools, ensure_ascii=False)}\n\n"
        f"At most {max_steps} steps."
    )


def repair_prompt(original: str, previous: object, problems: Mapping[str, Any]) -> str:
    shown = previous if isinstance(previous, str) else json.dumps(previous, ensure_ascii=False)
    return (
        f"{original}\n\n"
        f"Your previous plan was:\n{shown[:8000]}\n\n"
        "The validator rejected it with these problems (where -> problem):\n"
        f"{json.dumps(dict(problems), ensure_ascii=False)[:4000]}\n\n"
        "Return a corrected plan that fixes every problem."
    )


def generate_prompt(prompt: str, context: Mapping[str, str], omitted: Sequence[str]) -> str:
    if not context and not omitted:
        return prompt
    parts = [prompt, "", "Project files for context:"]
    for path, text in context.items():
        parts.append(f"--- {path} ---\n{text}")
    if omitted:
        parts.append(f"(not included, over the context budget: {', '.join(omitted)})")
    return "\n".join(parts)


def edit_prompt(path: str, content: str, instruction: str) -> str:
    return f"Instruction:\n{instruction}\n\nFile {path}:\n{content}"
