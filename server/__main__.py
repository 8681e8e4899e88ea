"""``python -m server ...``: the ``stretto`` command (``server.cli.main``) without an install."""

from __future__ import annotations

from server.cli.main import console_main

if __name__ == "__main__":
    console_main()
