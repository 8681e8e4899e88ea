"""The statements both backends run, written once.

Written in PostgreSQL's form (``$1``-numbered parameters, ``::type`` casts where asyncpg
needs a parameter's type); ``sqlite`` turns one into SQLite's (``?1``-numbered, casts
dropped), so both backends pass the same argument tuples in the same order (times are
encoded per backend: ``codec.time_text`` on SQLite, aware ``datetime`` on PostgreSQL).
Only dialect-specific SQL (the seq allocation with its NOTIFY, bulk inserts, ``ANY`` vs
``IN``, the event trim) stays in the backend modules. Pure: no I/O.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

from server.store.codec import FINISHED_RUN_STATUSES, RUN_COLUMNS, STEP_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Iterable

_PARAM = re.compile(r"\$(\d+)")
_CAST = re.compile(r"::[a-z_]+(\[\])?")


@cache
def sqlite(statement: str) -> str:
    """The SQLite spelling of a shared statement: ``$n`` -> ``?n``, ``::type`` casts dropped."""
    return _CAST.sub("", _PARAM.sub(r"?\1", statement))


def _marks(n: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + n))


def assignments(columns: Iterable[str], start: int) -> str:
    """``a = $start, b = $start+1, ...`` for an UPDATE of the given columns."""
    return ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start))


FILE_META_COLS = "project_id, path, size, version, sha256, content_type, updated_at"
NOT_FINISHED = "status NOT IN ({})".format(", ".join(f"'{s}'" for s in FINISHED_RUN_STATUSES))

# -- lifecycle -------------------------------------------------------------------------------
PING = "SELECT 1"
MIGRATIONS_APPLIED = "SELECT version FROM schema_migrations"
MIGRATION_DONE = "SELECT 1 FROM schema_migrations WHERE version = $1"

# -- users and refresh tokens ------------------------------------------------------------------
USER_INSERT = (
    "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)"
)
USER_BY_ID = "SELECT * FROM users WHERE id = $1"
USER_BY_EMAIL = "SELECT * FROM users WHERE email = $1"
REFRESH_INSERT = (
    "INSERT INTO refresh_tokens (id, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)"
)
REFRESH_USE = (
    "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL "
    "AND revoked_at IS NULL AND expires_at > $2 RETURNING user_id, family_id"
)
REFRESH_GET = "SELECT user_id, family_id, used_at FROM refresh_tokens WHERE id = $1"
REFRESH_REVOKE_FAMILY = (
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL"
)
REFRESH_REVOKE_FAMILY_OF = (
    "UPDATE refresh_tokens SET revoked_at = $3 WHERE revoked_at IS NULL AND "
    "family_id = (SELECT family_id FROM refresh_tokens WHERE id = $1 AND user_id = $2)"
)
REFRESH_FAMILY_ACTIVE = (  # the session lives: an unrevoked, unexpired token of the family
    "SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND user_id = $2 "
    "AND revoked_at IS NULL AND expires_at > $3 LIMIT 1"
)

# -- projects ----------------------------------------------------------------------------------
PROJECT_INSERT = (
    "INSERT INTO projects (id, owner_id, name, description, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $5)"
)
PROJECT_GET = "SELECT * FROM projects WHERE id = $1 AND owner_id = $2"
PROJECT_LIST = (
    "SELECT * FROM projects WHERE owner_id = $1 AND ($2::text IS NULL OR id < $2) "
    "ORDER BY id DESC LIMIT $3"
)
PROJECT_UPDATE = (
    "UPDATE projects SET name = coalesce($3::text, name), "
    "description = CASE WHEN $4::boolean THEN $5::text ELSE description END, "
    "updated_at = $6 WHERE id = $1 AND owner_id = $2 RETURNING *"
)
PROJECT_DELETE = "DELETE FROM projects WHERE id = $1 AND owner_id = $2 RETURNING id"
PROJECT_OWNER = "SELECT owner_id FROM projects WHERE id = $1"
PROJECT_COUNT = "SELECT count(*) FROM projects WHERE owner_id = $1"
USER_FILE_BYTES = (  # the owner's bytes across projects (per-user quota)
    "SELECT coalesce(sum(f.size), 0) FROM projects p JOIN files f ON f.project_id = p.id "
    "WHERE p.owner_id = $1"
)

# -- files -------------------------------------------------------------------------------------
FILE_LIST = (
    f"SELECT {FILE_META_COLS} FROM files WHERE project_id = $1 AND path > $2 "
    "AND substr(path, 1, length($3::text)) = $3::text ORDER BY path LIMIT $4"
)
FILE_GET = f"SELECT {FILE_META_COLS}, content FROM files WHERE project_id = $1 AND path = $2"
FILE_META = f"SELECT {FILE_META_COLS} FROM files WHERE project_id = $1 AND path = $2"
FILE_EXISTS = "SELECT 1 FROM files WHERE project_id = $1 AND path = $2"
FILE_QUOTA_STATE = (  # the project's totals and the file's current version and size
    "SELECT (SELECT count(*) FROM files WHERE project_id = $1) AS count, "
    "(SELECT coalesce(sum(size), 0) FROM files WHERE project_id = $1) AS total, "
    "f.version, f.size FROM (SELECT 1) AS one "
    "LEFT JOIN files f ON f.project_id = $1 AND f.path = $2"
)
FILE_UPSERT = (
    "INSERT INTO files (project_id, path, content, size, version, sha256, content_type, "
    "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (project_id, path) DO UPDATE SET content = excluded.content, "
    "size = excluded.size, version = excluded.version, sha256 = excluded.sha256, "
    "content_type = excluded.content_type, updated_at = excluded.updated_at"
)
FILE_MOVE = (
    "UPDATE files SET path = $3, version = version + 1, updated_at = $4 "
    f"WHERE project_id = $1 AND path = $2 RETURNING {FILE_META_COLS}"
)
FILE_DELETE = "DELETE FROM files WHERE project_id = $1 AND path = $2 RETURNING version"

# -- event log ---------------------------------------------------------------------------------
EVENTS_AFTER = "SELECT * FROM events WHERE project_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
EVENT_BOUNDS = (  # one statement: one snapshot
    "SELECT last_event_seq, (SELECT min(seq) FROM events WHERE project_id = $1) AS first_seq "
    "FROM projects WHERE id = $1"
)

# -- runs and steps ----------------------------------------------------------------------------
RUNS_IN_FLIGHT = f"SELECT count(*) FROM runs WHERE owner_id = $1 AND {NOT_FINISHED}"
RUN_INSERT = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({_marks(len(RUN_COLUMNS))}) "
    "ON CONFLICT (owner_id, idempotency_key) DO NOTHING RETURNING id"
)
STEP_UPSERT = (
    f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) VALUES ({_marks(len(STEP_COLUMNS))}) "
    "ON CONFLICT (run_id, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in STEP_COLUMNS if c not in ("run_id", "id"))
)
RUNS = (  # a run's row with its lease (run_leases, migration 5) as the record has them
    "SELECT runs.*, l.owner AS lease_owner, l.expires_at AS lease_expires_at "
    "FROM runs LEFT JOIN run_leases l ON l.run_id = runs.id"
)
RUN_BY_ID = f"{RUNS} WHERE id = $1"
RUN_BY_KEY = f"{RUNS} WHERE owner_id = $1 AND idempotency_key = $2"
RUN_GET = f"{RUNS} WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)"
RUN_LIST = (
    f"{RUNS} WHERE owner_id = $1 AND ($2::text IS NULL OR project_id = $2) "
    "AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR id < $4) "
    "ORDER BY id DESC LIMIT $5"
)
AWAITING = "status = 'awaiting_approval'"
RUNS_UNFINISHED = (  # runs to execute: a run awaiting approval waits for a person
    f"{RUNS} WHERE {NOT_FINISHED} AND NOT {AWAITING} AND ($1::timestamptz IS NULL "
    "OR l.owner IS NULL OR l.expires_at IS NULL OR l.expires_at < $1) ORDER BY id"
)
RUNS_APPROVAL_EXPIRED = f"{RUNS} WHERE {AWAITING} AND approval_expires_at < $1 ORDER BY id LIMIT $2"
# -- leases (migration 5): their own narrow rows, so a renewal never rewrites a run's row --
RUN_CLAIM = (  # free, expired or ours; never a finished run's
    "INSERT INTO run_leases (run_id, owner, expires_at) SELECT id, $2::text, $3::timestamptz "
    f"FROM runs WHERE id = $1 AND {NOT_FINISHED} ON CONFLICT (run_id) DO UPDATE SET "
    "owner = excluded.owner, expires_at = excluded.expires_at WHERE run_leases.owner = $2 "
    "OR run_leases.expires_at IS NULL OR run_leases.expires_at < $4 RETURNING run_id"
)
LEASES_RENEW = (
    "UPDATE run_leases SET expires_at = $2 WHERE owner = $1 "
    f"AND run_id IN (SELECT id FROM runs WHERE {NOT_FINISHED})"
)
LEASE_SET = (  # a run change naming the lease's owner
    "INSERT INTO run_leases (run_id, owner, expires_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
)
LEASE_EXPIRES = "UPDATE run_leases SET expires_at = $2 WHERE run_id = $1"
LEASE_DROP = "DELETE FROM run_leases WHERE run_id = $1"
STEPS_DELETE = "DELETE FROM steps WHERE run_id = $1"


def run_update(columns: Iterable[str], *, if_status: bool = False) -> str:
    """UPDATE of a run's columns: ``$1`` is the run id, the values follow from ``$2``.
    ``if_status``: only while the run's status is the last parameter (a conditional
    transition: of two concurrent ones, one updates the row, the other finds none).
    Without columns it only finds (and locks) the run's row."""
    names = list(columns)
    guard = f" AND status = ${len(names) + 2}" if if_status else ""
    sets = assignments(names, 2) if names else "status = status"
    return f"UPDATE runs SET {sets} WHERE id = $1{guard} RETURNING id"


def step_update(columns: Iterable[str]) -> str:
    """UPDATE of a step's columns: ``$1`` run id, ``$2`` step id, values from ``$3``."""
    return f"UPDATE steps SET {assignments(columns, 3)} WHERE run_id = $1 AND id = $2 RETURNING id"


# -- file history (migration 4): every state of every path, the current one included --------
FV_COLS = "project_id, path, version, content, size, sha256, content_type, run_id, created_at"
FV_META_COLS = (
    "path, version, size, sha256, content_type, run_id, created_at, "
    "CASE WHEN content IS NULL THEN 1 ELSE 0 END AS deleted"
)
FV_NEXT = (
    "SELECT coalesce(max(version), 0) + 1 FROM file_versions WHERE project_id = $1 AND path = $2"
)
FV_LATEST = "SELECT max(version) FROM file_versions WHERE project_id = $1 AND path = $2"
FV_INSERT = f"INSERT INTO file_versions ({FV_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
FV_INSERT_FROM_FILE = (  # the file's current row becomes a version (a move's target)
    f"INSERT INTO file_versions ({FV_COLS}) SELECT project_id, path, version, content, size, "
    "sha256, content_type, $3::text, updated_at FROM files WHERE project_id = $1 AND path = $2"
)
FV_TOMBSTONE = (  # the path stopped existing at this version (deleted, or moved away)
    f"INSERT INTO file_versions ({FV_COLS}) VALUES ($1, $2, $3, NULL, 0, NULL, NULL, $4, $5)"
)
FV_PRUNE = (  # retention of one path: the newest $3, none older than $4; never the newest one
    "DELETE FROM file_versions WHERE project_id = $1 AND path = $2 AND version < "
    "(SELECT max(version) FROM file_versions WHERE project_id = $1 AND path = $2) AND "
    "(created_at < $4 OR version NOT IN (SELECT version FROM file_versions "
    "WHERE project_id = $1 AND path = $2 ORDER BY version DESC LIMIT $3))"
)
FV_PRUNE_AGED = (  # age retention over the whole project (when its quota is short)
    "DELETE FROM file_versions WHERE project_id = $1 AND created_at < $2 AND version < "
    "(SELECT max(v.version) FROM file_versions v WHERE v.project_id = $1 "
    "AND v.path = file_versions.path)"
)
FV_TOTAL = "SELECT coalesce(sum(size), 0) FROM file_versions WHERE project_id = $1"
FV_LIST = (
    f"SELECT {FV_META_COLS} FROM file_versions WHERE project_id = $1 AND path = $2 "
    "AND ($3::bigint IS NULL OR version < $3) ORDER BY version DESC LIMIT $4"
)
FV_GET = (
    f"SELECT {FV_META_COLS}, content FROM file_versions "
    "WHERE project_id = $1 AND path = $2 AND version = $3"
)
FV_OF_RUN = (
    "SELECT path, min(version) AS first_version, max(version) AS last_version "
    "FROM file_versions WHERE project_id = $1 AND run_id = $2 GROUP BY path ORDER BY path"
)
FILE_SET_VERSION = (  # a move: the row takes its new path and the version numbered for it
    "UPDATE files SET path = $3, version = $4, updated_at = $5 "
    f"WHERE project_id = $1 AND path = $2 RETURNING {FILE_META_COLS}"
)

# -- review changesets (migration 4) -----------------------------------------------------------
RC_STAGE = (  # the base version is the project's newest when the path is first staged
    "INSERT INTO run_changes (run_id, path, content, size, sha256, content_type, base_version, "
    "moved_from, staged_at) SELECT $1, $3, $4, $5, $6, $7, (SELECT max(version) FROM "
    "file_versions WHERE project_id = $2 AND path = $3), $8, $9 "
    "ON CONFLICT (run_id, path) DO UPDATE SET content = excluded.content, size = excluded.size, "
    "sha256 = excluded.sha256, content_type = excluded.content_type, "
    "moved_from = excluded.moved_from, staged_at = excluded.staged_at"
)
RC_COLS = "path, content, size, sha256, content_type, base_version, moved_from, staged_at"
RC_GET = f"SELECT {RC_COLS} FROM run_changes WHERE run_id = $1 AND path = $2"
RC_LIST = f"SELECT {RC_COLS} FROM run_changes WHERE run_id = $1 ORDER BY path"
RC_TOTALS = "SELECT count(*), coalesce(sum(size), 0) FROM run_changes WHERE run_id = $1"
RC_DELETE = "DELETE FROM run_changes WHERE run_id = $1 AND path = $2"
RC_CLEAR = "DELETE FROM run_changes WHERE run_id = $1"
RUN_END_REVIEW = (  # only a run still awaiting review: one of two racing requests wins
    "UPDATE runs SET status = $2 WHERE id = $1 AND status = 'awaiting_review' RETURNING id"
)
