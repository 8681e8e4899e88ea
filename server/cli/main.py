"""The ``stretto`` command: ``serve``, ``migrate``, ``check``, ``bench``, ``openapi``, ``version``.

``main(argv) -> int`` is the one entry point for the console script, the tests and the
PyInstaller executable. Invalid settings print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

import trio

from server.config import Settings, SettingsError, add_arguments, load_settings
from server.errors import StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("stretto")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_PENDING_MIGRATIONS = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stretto",
        description="Workflow-and-streaming server for AI-assisted project apps.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="Run the HTTP/SSE server.")
    add_arguments(serve)
    migrate = commands.add_parser("migrate", help="Apply pending database migrations.")
    add_arguments(migrate)
    check = commands.add_parser(
        "check",
        help="Validate settings and database connectivity "
        "(exit 0 ok, 2 bad settings, 3 database unreachable, 4 migrations pending).",
    )
    add_arguments(check)
    commands.add_parser("version", help="Print version, git commit and Python version.")
    from server.bench.cli import add_parser as add_bench_parser

    add_bench_parser(commands)
    from server.cli.openapi import add_parser as add_openapi_parser

    add_openapi_parser(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args)


def _configure_logging(settings: Settings) -> None:
    from server.observability.logging import configure_logging

    configure_logging(settings)


def _hard_exit_after(seconds: float) -> None:
    """Last resort when shutdown hangs (a stalled client holding a shielded write)."""

    def die() -> None:
        log.error("shutdown did not finish within %.0fs: exiting hard", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, die)
    timer.daemon = True
    timer.start()


async def _serve(settings: Settings) -> None:
    from server.runtime import HTTP_DRAIN_S, serve
    from server.services import Lifecycle

    lifecycle = Lifecycle()

    async def arm_watchdog() -> None:
        await lifecycle.shutdown_requested.wait()
        _hard_exit_after(settings.shutdown_grace_s + HTTP_DRAIN_S + 10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(arm_watchdog)
        await serve(settings, handle_signals=True, lifecycle=lifecycle)
        nursery.cancel_scope.cancel()


async def _migrate(settings: Settings) -> int:
    import trio_asyncio

    from server.store.factory import open_store

    async with trio_asyncio.open_loop(), open_store(settings) as store:
        applied = await store.migrate()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return EXIT_OK


async def _check(settings: Settings) -> int:
    import trio_asyncio

    from server.errors import AppError
    from server.store.factory import open_store

    failure: BaseException | None = None
    pending: list[int] = []
    try:
        async with trio_asyncio.open_loop(), open_store(settings) as store:
            await store.ping()
            pending = await store.pending_migrations()
    except* (AppError, OSError) as group:  # trio-asyncio's nursery wraps errors in a group
        failure = group.exceptions[0]
    if failure is not None:
        print(f"database: unreachable ({failure})", file=sys.stderr)
        return EXIT_DATABASE
    backend = "postgresql" if settings.uses_postgres else f"sqlite ({settings.sqlite_path})"
    if pending:
        print(f"database: {backend}, pending migrations {pending}", file=sys.stderr)
        return EXIT_PENDING_MIGRATIONS
    print(f"settings: ok\ndatabase: {backend}, schema up to date")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        from server.cli.version import version_text

        print(version_text())
        return EXIT_OK
    if args.command == "bench":
        from server.bench.cli import main as bench_main

        return bench_main(args)
    if args.command == "openapi":
        from server.cli.openapi import main as openapi_main

        return openapi_main(args)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"stretto: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(settings)
    if args.command == "serve":
        unavailable: BaseException | None = None
        try:
            trio.run(_serve, settings)
        except* StoreUnavailable as group:
            unavailable = group.exceptions[0]
        if unavailable is not None:
            print(f"stretto: {unavailable}", file=sys.stderr)
            return EXIT_DATABASE
        return EXIT_OK
    if args.command == "migrate":
        return trio.run(_migrate, settings)
    return trio.run(_check, settings)  # "check": argparse allows no other command


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
