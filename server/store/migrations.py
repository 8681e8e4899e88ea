"""Versioned schema migrations for both dialects.

Each ``Migration`` is applied in its own transaction together with its row in
``schema_migrations``; the backends own the applying (``SqliteStore.migrate``,
``PostgresStore.migrate``). Never edit a released migration: append a new one.

Dialect notes: SQLite stores times as RFC 3339 text (fixed width, so they sort) and JSON as
text; PostgreSQL uses ``timestamptz`` and ``jsonb``, and its key columns use ``COLLATE "C"``
so that cursor order is byte order on both backends.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.errors import SchemaTooNew


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite_sql: str
    postgres_sql: str


SCHEMA_MIGRATIONS_SQLITE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

SCHEMA_MIGRATIONS_POSTGRES = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_V1_SQLITE = """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    password_hash TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_event_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX projects_owner_id ON projects (owner_id, id);
CREATE TABLE files (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    content BLOB NOT NULL,
    size INTEGER NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project_id, path)
);
"""

_V1_POSTGRES = """
CREATE TABLE users (
    id text COLLATE "C" PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    password_hash text,
    created_at timestamptz NOT NULL
);
CREATE TABLE refresh_tokens (
    id text PRIMARY KEY,
    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE TABLE projects (
    id text COLLATE "C" PRIMARY KEY,
    owner_id text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name text NOT NULL,
    description text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX projects_owner_id ON projects (owner_id, id);
CREATE TABLE files (
    project_id text COLLATE "C" NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path text COLLATE "C" NOT NULL,
    content bytea NOT NULL,
    size bigint NOT NULL,
    version bigint NOT NULL,
    sha256 text NOT NULL,
    content_type text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, path)
);
"""

_V2_SQLITE = """
CREATE TABLE events (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_id, seq)
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL,
    status TEXT NOT NULL,
    prompt TEXT,
    intent TEXT,
    plan TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    metrics TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    idempotency_key TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT,
    UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX runs_owner_id ON runs (owner_id, id);
CREATE INDEX runs_project_id ON runs (project_id, id);
CREATE INDEX runs_unfinished ON runs (status)
    WHERE status NOT IN ('succeeded', 'failed', 'cancelled');
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    needs TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    output TEXT,
    error TEXT,
    started_at TEXT,
    finished_at TEXT,
    duration_ms REAL,
    queue_ms REAL,
    PRIMARY KEY (run_id, id)
);
"""

_V2_POSTGRES = """
CREATE TABLE events (
    project_id text COLLATE "C" NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    type text NOT NULL,
    data text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, seq)
);
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    project_id text COLLATE "C" NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    owner_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    prompt text,
    intent jsonb,
    plan jsonb,
    options jsonb NOT NULL DEFAULT '{}',
    error jsonb,
    metrics jsonb,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    idempotency_key text,
    lease_owner text,
    lease_expires_at timestamptz,
    UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX runs_owner_id ON runs (owner_id, id);
CREATE INDEX runs_project_id ON runs (project_id, id);
CREATE INDEX runs_unfinished ON runs (status)
    WHERE status NOT IN ('succeeded', 'failed', 'cancelled');
CREATE TABLE steps (
    run_id text COLLATE "C" NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    position integer NOT NULL,
    tool text NOT NULL,
    args jsonb NOT NULL,
    needs jsonb NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    output jsonb,
    error jsonb,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms double precision,
    queue_ms double precision,
    PRIMARY KEY (run_id, id)
);
"""

# Migration 3 (issue 17): plan approval and retry.
_V3_SQLITE = """
ALTER TABLE runs ADD COLUMN retry_of TEXT;
ALTER TABLE runs ADD COLUMN approved_at TEXT;
ALTER TABLE runs ADD COLUMN approval_expires_at TEXT;
ALTER TABLE steps ADD COLUMN reads TEXT;
CREATE INDEX runs_awaiting_approval ON runs (approval_expires_at)
    WHERE status = 'awaiting_approval';
"""

_V3_POSTGRES = """
ALTER TABLE runs ADD COLUMN retry_of text COLLATE "C";
ALTER TABLE runs ADD COLUMN approved_at timestamptz;
ALTER TABLE runs ADD COLUMN approval_expires_at timestamptz;
ALTER TABLE steps ADD COLUMN reads jsonb;
CREATE INDEX runs_awaiting_approval ON runs (approval_expires_at)
    WHERE status = 'awaiting_approval';
"""

# Migration 4: file history. Every state of every path is a row, the current one included
# (its bytes are also in ``files``): a NULL ``content`` marks a path that stopped existing
# (deleted, or moved away). ``run_id`` names the workflow run that wrote the version.
# ``run_changes``: the changeset of a run with ``changes: "review"``, one row per path
# (NULL content: deleted), with the project's newest version of the path when first staged.
_V4_SQLITE = """
CREATE TABLE file_versions (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    version INTEGER NOT NULL,
    content BLOB,
    size INTEGER NOT NULL,
    sha256 TEXT,
    content_type TEXT,
    run_id TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_id, path, version)
);
CREATE INDEX file_versions_run ON file_versions (project_id, run_id) WHERE run_id IS NOT NULL;
INSERT INTO file_versions (project_id, path, version, content, size, sha256, content_type,
    run_id, created_at)
SELECT project_id, path, version, content, size, sha256, content_type, NULL, updated_at
FROM files;
CREATE TABLE run_changes (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    content BLOB,
    size INTEGER NOT NULL,
    sha256 TEXT,
    content_type TEXT,
    base_version INTEGER,
    moved_from TEXT,
    staged_at TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
);
"""

_V4_POSTGRES = """
CREATE TABLE file_versions (
    project_id text COLLATE "C" NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    content bytea,
    size bigint NOT NULL,
    sha256 text,
    content_type text,
    run_id text COLLATE "C",
    created_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, path, version)
);
CREATE INDEX file_versions_run ON file_versions (project_id, run_id) WHERE run_id IS NOT NULL;
INSERT INTO file_versions (project_id, path, version, content, size, sha256, content_type,
    run_id, created_at)
SELECT project_id, path, version, content, size, sha256, content_type, NULL, updated_at
FROM files;
CREATE TABLE run_changes (
    run_id text COLLATE "C" NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path text COLLATE "C" NOT NULL,
    content bytea,
    size bigint NOT NULL,
    sha256 text,
    content_type text,
    base_version bigint,
    moved_from text,
    staged_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, path)
);
"""

# Migration 5: run leases in their own narrow table. A renewal (every third of a lease, for
# every run an instance holds) then writes a small row instead of rewriting the whole run
# row with its prompt, plan and metrics. No row: nobody holds the run.
_V5_SQLITE = """
CREATE TABLE run_leases (
    run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    expires_at TEXT
);
CREATE INDEX run_leases_owner ON run_leases (owner);
INSERT INTO run_leases (run_id, owner, expires_at)
SELECT id, lease_owner, lease_expires_at FROM runs WHERE lease_owner IS NOT NULL;
ALTER TABLE runs DROP COLUMN lease_owner;
ALTER TABLE runs DROP COLUMN lease_expires_at;
"""

_V5_POSTGRES = """
CREATE TABLE run_leases (
    run_id text COLLATE "C" PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    owner text NOT NULL,
    expires_at timestamptz
);
CREATE INDEX run_leases_owner ON run_leases (owner);
INSERT INTO run_leases (run_id, owner, expires_at)
SELECT id, lease_owner, lease_expires_at FROM runs WHERE lease_owner IS NOT NULL;
ALTER TABLE runs DROP COLUMN lease_owner, DROP COLUMN lease_expires_at;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "users, refresh tokens, projects, files", _V1_SQLITE, _V1_POSTGRES),
    Migration(2, "event log, workflow runs and steps", _V2_SQLITE, _V2_POSTGRES),
    Migration(3, "plan approval and retry: runs, files steps read", _V3_SQLITE, _V3_POSTGRES),
    Migration(4, "file history; review changesets of runs", _V4_SQLITE, _V4_POSTGRES),
    Migration(5, "run leases in their own table", _V5_SQLITE, _V5_POSTGRES),
)


def latest_version() -> int:
    return MIGRATIONS[-1].version


def pending(applied: set[int]) -> list[Migration]:
    """Migrations not in ``applied``, in version order.

    Raises ``SchemaTooNew`` when ``applied`` holds a version this binary does not know (a
    newer stretto migrated the database: roll back by restoring the backup taken before).
    """
    known = {m.version for m in MIGRATIONS}
    unknown = sorted(applied - known)
    if unknown:
        raise SchemaTooNew(
            f"the database schema is at migration {unknown[-1]}, newer than this stretto "
            f"knows (up to {max(known)}): run the newer stretto, or restore the backup "
            "taken before it migrated"
        )
    return [m for m in sorted(MIGRATIONS, key=lambda m: m.version) if m.version not in applied]
