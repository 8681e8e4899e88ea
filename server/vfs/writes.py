"""``FileWrite``: one file of a many-file write (an import), as the store takes it. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileWrite:
    """A file's bytes and what describes them (``Store.put_files``)."""

    path: str
    content: bytes
    content_type: str
    sha256: str
