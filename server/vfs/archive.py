"""Project archives: reading a tar, tar.gz or zip (or a directory) into VFS files for an
import, and writing a project as a tar.gz for an export. Pure and synchronous: callers run
them in a worker thread (decompression is CPU work).

Reading is all or nothing: every member is checked before anything is returned, and every
problem is reported per member (``ArchiveRejected.problems``), so an import either writes
every file or none. Refused: absolute names and ``..`` (zip-slip), symbolic and hard links,
devices, FIFOs and sockets, names that break the VFS path rules, duplicate paths, a member
larger than the file limit, and more files or bytes than the limits allow (checked while
decompressing, so a small archive cannot expand without bound).
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.errors import InvalidPath
from server.vfs.paths import validate_path

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_file_bytes: int
    max_total_bytes: int
    max_files: int


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    path: str
    content: bytes


@dataclass
class ArchiveRejected(Exception):
    """The archive can't be imported; ``problems`` maps member names to what is wrong."""

    problems: dict[str, str] = field(default_factory=dict)
    too_large: bool = False  # a size or count limit (413) rather than a bad member (400)

    def __str__(self) -> str:
        return "; ".join(f"{name}: {problem}" for name, problem in self.problems.items())


class _Reader:
    """Collects members with their problems, enforcing the limits as it goes."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.files: dict[str, bytes] = {}
        self.problems: dict[str, str] = {}
        self.total = 0

    def path_for(self, name: str) -> str | None:
        path = name.removeprefix("./")
        if name.startswith("/") or any(part == ".." for part in name.split("/")):
            self.problems[name] = "escapes the project (absolute or '..')"
            return None
        try:
            validate_path(path)
        except InvalidPath as exc:
            self.problems[name] = f"not a valid path: {exc.message}"
            return None
        if path in self.files:
            self.problems[name] = "appears twice"
            return None
        return path

    def read_bounded(self, name: str, stream: io.BufferedIOBase | io.RawIOBase) -> bytes:
        """The member's bytes; raises ``ArchiveRejected`` past the file or total limit."""
        parts: list[bytes] = []
        size = 0
        while chunk := stream.read(READ_CHUNK):
            size += len(chunk)
            if size > self.limits.max_file_bytes:
                raise self.reject_member(name)
            if self.total + size > self.limits.max_total_bytes:
                raise self.reject_total()
            parts.append(chunk)
        self.total += size
        return b"".join(parts)

    def reject_member(self, name: str) -> ArchiveRejected:
        """An oversize member ends the read at once: nothing more is decompressed."""
        problem = f"larger than {self.limits.max_file_bytes} bytes"
        return ArchiveRejected({**self.problems, name: problem}, too_large=True)

    def skip(self, size: int) -> None:
        """Count a refused member's bytes: passing over them decompresses them too."""
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise self.reject_total()

    def reject_total(self) -> ArchiveRejected:
        return ArchiveRejected(
            {**self.problems, "*": f"more than {self.limits.max_total_bytes} bytes in all"},
            too_large=True,
        )

    def add(self, path: str, content: bytes) -> None:
        if len(self.files) >= self.limits.max_files:
            raise ArchiveRejected(
                {**self.problems, "*": f"more than {self.limits.max_files} files"}, too_large=True
            )
        self.files[path] = content

    def result(self) -> list[ArchiveFile]:
        if self.problems:
            raise ArchiveRejected(dict(self.problems))
        return [ArchiveFile(path, content) for path, content in sorted(self.files.items())]


def _read_tar(data: bytes, reader: _Reader) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            if member.isdir():
                continue
            if member.issym() or member.islnk():
                reader.problems[member.name] = "is a link"
                continue
            if not member.isfile():
                reader.problems[member.name] = "is not a regular file (device, FIFO or socket)"
                continue
            if member.size > reader.limits.max_file_bytes:
                raise reader.reject_member(member.name)
            path = reader.path_for(member.name)
            if path is None:
                reader.skip(member.size)
                continue
            extracted = archive.extractfile(member)
            assert extracted is not None  # a regular file always has content
            reader.add(path, reader.read_bounded(member.name, extracted))  # type: ignore[arg-type]


def _read_zip(data: bytes, reader: _Reader) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: made where files have no type
            if kind == stat.S_IFLNK:
                reader.problems[info.filename] = "is a link"
                continue
            if kind not in (0, stat.S_IFREG):
                reader.problems[info.filename] = "is not a regular file (device, FIFO or socket)"
                continue
            path = reader.path_for(info.filename)
            if path is None:
                continue  # zip members are read only when asked for: nothing to skip
            with archive.open(info) as member:
                content = reader.read_bounded(info.filename, member)  # type: ignore[arg-type]
            reader.add(path, content)


def read_archive(data: bytes, limits: ArchiveLimits) -> list[ArchiveFile]:
    """The files of a tar, tar.gz or zip archive; raises ``ArchiveRejected``."""
    reader = _Reader(limits)
    try:
        if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
            _read_zip(data, reader)
        else:
            _read_tar(data, reader)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveRejected({"*": f"not a readable tar, tar.gz or zip archive ({exc})"}) from exc
    return reader.result()


def read_directory(root: Path, limits: ArchiveLimits) -> list[ArchiveFile]:
    """The files below ``root`` (for ``stretto import DIR``), with the archive rules."""
    reader = _Reader(limits)
    for entry in sorted(root.rglob("*")):
        name = entry.relative_to(root).as_posix()
        if entry.is_symlink():
            reader.problems[name] = "is a link"
        elif entry.is_dir():
            continue
        elif not entry.is_file():
            reader.problems[name] = "is not a regular file (device, FIFO or socket)"
        elif (path := reader.path_for(name)) is not None:
            with entry.open("rb") as stream:
                reader.add(path, reader.read_bounded(name, stream))
    return reader.result()


class _Sink(io.RawIOBase):
    """A write-only file that hands out what was written since the last ``drain``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class TarGzWriter:
    """Writes a tar.gz incrementally: each ``add`` returns the compressed bytes ready so far,
    ``close`` the rest, so an export streams with memory bounded by one file."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._tar = tarfile.open(fileobj=self._sink, mode="w|gz")  # noqa: SIM115 (closed in close)

    def add(self, path: str, content: bytes, mtime: float) -> bytes:
        info = tarfile.TarInfo(path)
        info.size = len(content)
        info.mtime = int(mtime)
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(content))
        return self._sink.drain()

    def close(self) -> bytes:
        self._tar.close()
        return self._sink.drain()


def tar_gz(files: list[tuple[str, bytes, float]]) -> Iterator[bytes]:
    """A whole tar.gz, chunk by chunk (tests and the CLI)."""
    writer = TarGzWriter()
    for path, content, mtime in files:
        yield writer.add(path, content, mtime)
    yield writer.close()
