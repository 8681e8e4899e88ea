"""``stretto openapi``: print the OpenAPI 3.1 document (the one ``GET /api/openapi.json``
serves) without a server or a database. Tools: the built-in ones, as ``stretto serve``
registers them."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse


def add_parser(commands: Any) -> None:
    """Register the ``openapi`` sub-command on ``commands`` (argparse subparsers)."""
    parser = commands.add_parser("openapi", help="Print the OpenAPI 3.1 document (JSON).")
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (0: one line).")


def main(args: argparse.Namespace) -> int:
    from server.api.openapi import build_document
    from server.workflow.tools.ai_tools import ai_tools
    from server.workflow.tools.defaults import default_registry

    document = build_document(default_registry(ai_tools()))
    indent = args.indent or None
    json.dump(document, sys.stdout, indent=indent, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
