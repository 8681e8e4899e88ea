"""The built-in tool set: the registry (the contract) knows no tool; this module knows them.

Kept apart from ``server.workflow.tools.registry`` so that the tools, which import the
registry's ``Tool``, are not imported back by it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.workflow.tools.registry import ToolRegistry
from server.workflow.tools.summary_tool import summary_tools
from server.workflow.tools.text_tools import text_tools
from server.workflow.tools.vfs_tools import vfs_tools

if TYPE_CHECKING:
    from collections.abc import Iterable

    from server.workflow.tools.registry import Tool


def default_registry(extra: Iterable[Tool] = ()) -> ToolRegistry:
    """The built-in VFS tools, the exact text tools, plus ``extra`` (the AI tools, test doubles)."""
    registry = ToolRegistry(vfs_tools())
    for exact in (*text_tools(), *summary_tools()):  # text.replace, code.rename, project.summary
        registry.register(exact)
    for tool in extra:
        registry.register(tool)
    return registry
