"""``python -m server.bench SCENARIO ...``: the bench without the rest of the CLI."""

from __future__ import annotations

import sys

from server.bench.cli import build_parser, main

if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args(["bench", *sys.argv[1:]])))
