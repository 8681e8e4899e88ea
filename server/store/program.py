"""Units of work written once for both backends: programs that yield requests.

A *program* is a generator: it yields requests, is sent each answer, and returns the unit's
result. Its logic (what to read, what to check, what to write, in which order) is shared;
the backend's driver only answers requests: ``sqlite_runs.drive`` (sqlite3, in the worker
thread) and ``postgres_runs.drive`` (asyncpg). Requests:

- ``Call``: a shared statement (``server.store.sql``'s ``$n`` form), its arguments and what
  to fetch. Times are passed as ``datetime``; the SQLite driver encodes them as text.
- ``Reserve``: a write that will append ``events`` events of one project begins. PostgreSQL
  locks the owner's row (``lock_owner``: a per-user quota is checked) and then allocates the
  seqs, which locks the project row so writers of one project queue; SQLite (one writer)
  only checks the project exists. Both raise ``NotFound`` for a missing project.
- ``LockUser``: serialize one user's limit checks (PostgreSQL; SQLite has one writer).
- ``Append``: insert events with gap-free seqs (those reserved, if any); answers the
  ``StoredEvent`` list.
- ``RunsWithSteps``: the ``Run`` records of run rows, each with its steps.

A program is made anew for every unit (``Make``), so a unit that runs again starts afresh.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence
    from datetime import datetime

    from server.events.model import NewEvent

T = TypeVar("T")

Fetch = Literal["none", "val", "row", "rows", "many"]


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``statement`` with ``args``; answer by ``fetch``: nothing, the first column of the
    first row (None without a row), the first row (None) or every row; ``many``: run it
    once per argument tuple in ``args`` (answers None). ``missing``: when the statement
    breaks a foreign key, raise ``NotFound`` with this message."""

    statement: str
    args: tuple[Any, ...]
    fetch: Fetch
    missing: str | None = None


@dataclass(frozen=True, slots=True)
class Reserve:
    """A write appending ``events`` events of ``project_id`` begins (answers None)."""

    project_id: str
    events: int
    lock_owner: bool = False


@dataclass(frozen=True, slots=True)
class LockUser:
    """PostgreSQL: lock the user's row, which serializes the user's limit checks (answers
    None; ``NotFound`` for a missing user). SQLite (one writer) needs no lock."""

    user_id: str


@dataclass(frozen=True, slots=True)
class Append:
    """Insert ``events`` (their seqs reserved or allocated now); answers ``list[StoredEvent]``."""

    events: Sequence[NewEvent]
    now: datetime


@dataclass(frozen=True, slots=True)
class RunsWithSteps:
    """The runs of ``rows`` (rows of ``runs``) with their steps; answers ``list[Run]``."""

    rows: Sequence[Any]


Request = Call | Reserve | LockUser | Append | RunsWithSteps

if TYPE_CHECKING:
    Program = Generator[Request, Any, T]
    Make = Callable[[], Program[T]]


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """What ``step`` gives back when the program returned ``value``."""

    value: T


def step(program: Program[T], answer: Any) -> Request | Done[T]:
    """Send ``answer`` to ``program``: its next request, or ``Done`` with its result."""
    try:
        return program.send(answer)
    except StopIteration as done:
        return Done(done.value)


class Access(Enum):
    """How a unit touches the database, so that each backend picks its cheapest way."""

    READ = "read"  # one reading statement
    SNAPSHOT = "snapshot"  # several reading statements that must see one state
    WRITE = "write"  # a transaction that writes
    WRITE_ONE = "write_one"  # one writing statement (atomic by itself)


class UnitRunner:
    """The base of the shared operations (``AccountStore``, ``FileStore``, ``RunStore``):
    each backend's store class provides ``_unit``."""

    async def _unit(self, make: Make[T], access: Access) -> T:
        """Run ``make()``'s program as one unit of work, as ``access`` says."""
        raise NotImplementedError


def execute(statement: str, *args: Any, missing: str | None = None) -> Call:
    return Call(statement, args, "none", missing)


def many(statement: str, arg_rows: Sequence[Sequence[Any]], missing: str | None = None) -> Call:
    return Call(statement, tuple(arg_rows), "many", missing)


def value(statement: str, *args: Any, missing: str | None = None) -> Call:
    return Call(statement, args, "val", missing)


def row(statement: str, *args: Any) -> Call:
    return Call(statement, args, "row")


def rows(statement: str, *args: Any) -> Call:
    return Call(statement, args, "rows")
