"""``FileWrite``: one file of a many-file write (an import), as the store takes it; ``FileOp``:
one change of an atomic many-path apply (a review's apply, a run's revert). Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileWrite:
    """A file's bytes and what describes them (``Store.put_files``)."""

    path: str
    content: bytes
    content_type: str
    sha256: str


@dataclass(frozen=True, slots=True)
class FileOp:
    """Write ``write`` at ``path``, or delete ``path`` when ``write`` is None
    (``Store.apply_file_ops``)."""

    path: str
    write: FileWrite | None
