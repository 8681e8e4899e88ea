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
from server.runtime.preflight import EXIT_CODES_HELP, ExitCode, StartupError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.runtime.workers import WorkerSlot

log = logging.getLogger("stretto")


SERVER_COMMANDS = frozenset({"serve", "migrate", "check", "version"})


def build_parser(*, tools: bool = True) -> argparse.ArgumentParser:
    """The command line. ``tools=False`` leaves out ``bench``, ``backup``, ``import`` and
    ``openapi``, whose parsers import their modules (the bench client among them): a
    server command does not pay for them in start-up time and idle memory."""
    parser = argparse.ArgumentParser(
        prog="stretto",
        description="Workflow-and-streaming server for AI-assisted project apps.",
        epilog=EXIT_CODES_HELP,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="Run the HTTP/SSE server.")
    add_arguments(serve)
    migrate = commands.add_parser("migrate", help="Apply pending database migrations.")
    add_arguments(migrate)
    check = commands.add_parser(
        "check",
        help="Validate settings, the listen address, the data directory and the database, "
        "writing nothing. " + EXIT_CODES_HELP,
    )
    add_arguments(check)
    commands.add_parser("version", help="Print version, git commit and Python version.")
    if not tools:
        return parser
    from server.bench.cli import add_parser as add_bench_parser

    add_bench_parser(commands)
    from server.cli.backup import add_parser as add_backup_parser

    add_backup_parser(commands)
    from server.cli.import_project import add_parser as add_import_parser

    add_import_parser(commands)
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


async def _serve(settings: Settings, worker: WorkerSlot | None = None) -> None:
    from server.runtime.http_server import HTTP_DRAIN_S
    from server.runtime.serve import serve
    from server.services import Lifecycle

    lifecycle = Lifecycle()

    async def arm_watchdog() -> None:
        await lifecycle.shutdown_requested.wait()
        _hard_exit_after(settings.shutdown_grace_s + HTTP_DRAIN_S + 10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(arm_watchdog)
        await serve(settings, handle_signals=True, lifecycle=lifecycle, worker=worker)
        nursery.cancel_scope.cancel()


async def _migrate(settings: Settings) -> int:
    import trio_asyncio

    from server.runtime.preflight import check_data_dir
    from server.store.factory import open_store

    check_data_dir(settings)
    async with trio_asyncio.open_loop(), open_store(settings) as store:
        applied = await store.migrate()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return ExitCode.OK


async def _check(settings: Settings) -> int:
    """Everything ``serve`` would refuse, found without writing: the listen address is bound
    and released, a missing SQLite database is reported, not created."""
    import trio_asyncio

    from server.runtime.preflight import bind_listeners, check_data_dir
    from server.store.factory import open_store

    for sock in bind_listeners(settings):
        sock.close()
    exists = check_data_dir(settings)
    if not settings.uses_postgres and not (exists and settings.sqlite_path.exists()):
        print(
            f"database: no SQLite database at {settings.sqlite_path}; "
            "run `stretto migrate` (or `stretto serve`) to create it",
            file=sys.stderr,
        )
        return ExitCode.MIGRATIONS_PENDING
    async with trio_asyncio.open_loop(), open_store(settings) as store:
        await store.ping()
        pending = await store.pending_migrations()
    backend = "postgresql" if settings.uses_postgres else f"sqlite ({settings.sqlite_path})"
    if pending:
        print(
            f"database: {backend}, pending migrations {pending}; run `stretto migrate`",
            file=sys.stderr,
        )
        return ExitCode.MIGRATIONS_PENDING
    print(f"settings: ok\ndatabase: {backend}, schema up to date")
    return ExitCode.OK


def _serve_worker(settings: Settings, worker: WorkerSlot) -> int:
    """One of ``serve --workers N`` (in a forked child)."""
    return _run_command("serve", settings, worker)


def _run_command(command: str, settings: Settings, worker: WorkerSlot | None = None) -> int:
    """Run a server command; a bad start becomes one line on stderr and its exit code."""
    from server.errors import StoreUnavailable
    from server.runtime.preflight import describe_store_failure, only_error

    try:
        if command == "serve" and worker is None and settings.worker_count > 1:
            from server.runtime.workers import run_workers

            return run_workers(settings, _serve_worker)
        if command == "serve":
            trio.run(_serve, settings, worker)
            return ExitCode.OK
        if command == "migrate":
            return trio.run(_migrate, settings)
        return trio.run(_check, settings)  # "check": argparse allows no other command
    except (StartupError, StoreUnavailable, BaseExceptionGroup) as exc:
        startup = only_error(exc, StartupError)
        if startup is None:
            unavailable = only_error(exc, StoreUnavailable)
            if unavailable is None:
                raise
            startup = describe_store_failure(settings, unavailable)
        print(f"stretto: {startup}", file=sys.stderr)
        return startup.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(tools=not argv or argv[0] not in SERVER_COMMANDS)
    args = parser.parse_args(argv)
    if args.command == "version":
        from server.cli.version import version_text

        print(version_text())
        return ExitCode.OK
    if args.command == "bench":
        from server.bench.cli import main as bench_main

        return bench_main(args)
    if args.command == "backup":
        from server.cli.backup import main as backup_main

        return backup_main(args)
    if args.command == "import":
        from server.cli.import_project import main as import_main

        return import_main(args)
    if args.command == "openapi":
        from server.cli.openapi import main as openapi_main

        return openapi_main(args)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"stretto: invalid setting: {exc}", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    _configure_logging(settings)
    return _run_command(args.command, settings)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
