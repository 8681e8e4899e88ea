"""Project archives on real tar, tar.gz and zip files: the round trip, and every refusal."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from typing import TYPE_CHECKING

import pytest

from server.vfs.archive import (
    ArchiveFile,
    ArchiveLimits,
    ArchiveRejected,
    read_archive,
    read_directory,
    tar_gz,
)

if TYPE_CHECKING:
    from pathlib import Path

LIMITS = ArchiveLimits(max_file_bytes=1024 * 1024, max_total_bytes=4 * 1024 * 1024, max_files=100)
FILES = {
    "README.md": b"# demo\n",
    "src/app.js": b"export const x = 1;\n",
    "src/\xed\x95\x9c\xea\xb8\x80.txt".encode("latin-1").decode("utf-8"): "안녕".encode(),
    "bin/blob": bytes(range(256)) * 10,
    "empty": b"",
}


def make_tar(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return out.getvalue()


def make_zip(members: list[tuple[str, bytes] | tuple[str, bytes, int]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            info = zipfile.ZipInfo(member[0])
            info.compress_type = zipfile.ZIP_DEFLATED
            if len(member) == 3:
                info.external_attr = member[2] << 16
            archive.writestr(info, member[1])
    return out.getvalue()


def as_dict(files: list[ArchiveFile]) -> dict[str, bytes]:
    return {f.path: f.content for f in files}


@pytest.mark.parametrize("mode", ["w:gz", "w", "w:xz"])
def test_tar_round_trip_is_byte_identical(mode: str) -> None:
    data = make_tar(list(FILES.items()), mode)
    assert as_dict(read_archive(data, LIMITS)) == FILES


def test_zip_round_trip() -> None:
    assert as_dict(read_archive(make_zip(list(FILES.items())), LIMITS)) == FILES


def test_export_then_import_is_byte_identical() -> None:
    exported = b"".join(tar_gz([(path, content, 1.7e9) for path, content in FILES.items()]))
    assert exported[:2] == b"\x1f\x8b"
    assert as_dict(read_archive(exported, LIMITS)) == FILES


def test_leading_dot_slash_and_directories_are_accepted() -> None:
    folder = tarfile.TarInfo("./src")
    folder.type = tarfile.DIRTYPE
    data = make_tar([folder, ("./src/a.txt", b"a")])
    assert as_dict(read_archive(data, LIMITS)) == {"src/a.txt": b"a"}


def problems_of(data: bytes, limits: ArchiveLimits = LIMITS) -> ArchiveRejected:
    with pytest.raises(ArchiveRejected) as caught:
        read_archive(data, limits)
    return caught.value


def test_zip_slip_absolute_and_bad_paths_are_refused_all_together() -> None:
    rejected = problems_of(
        make_tar(
            [("ok.txt", b"fine"), ("../evil", b"x"), ("/etc/passwd", b"x"), ("a//b", b"x"),
             ("ctl\x01", b"x"), ("src/../../x", b"x")]
        )
    )  # fmt: skip
    assert set(rejected.problems) == {"../evil", "/etc/passwd", "a//b", "ctl\x01", "src/../../x"}
    assert not rejected.too_large
    rejected = problems_of(make_zip([("ok.txt", b"fine"), ("../../evil.sh", b"x")]))
    assert set(rejected.problems) == {"../../evil.sh"}


def test_links_and_special_files_are_refused() -> None:
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "ok.txt"
    device = tarfile.TarInfo("dev")
    device.type = tarfile.CHRTYPE
    fifo = tarfile.TarInfo("fifo")
    fifo.type = tarfile.FIFOTYPE
    rejected = problems_of(make_tar([("ok.txt", b"x"), link, hard, device, fifo]))
    assert set(rejected.problems) == {"link", "hard", "dev", "fifo"}
    zip_link = make_zip([("ok.txt", b"x"), ("zlink", b"/etc/passwd", 0o120777)])
    assert set(problems_of(zip_link).problems) == {"zlink"}


def test_duplicates_are_refused() -> None:
    rejected = problems_of(make_tar([("a.txt", b"1"), ("./a.txt", b"2")]))
    assert rejected.problems == {"./a.txt": "appears twice"}


def test_oversize_member_and_decompression_bombs_are_refused() -> None:
    small = ArchiveLimits(max_file_bytes=1000, max_total_bytes=5000, max_files=3)
    rejected = problems_of(make_tar([("big", b"x" * 1001)]), small)
    assert rejected.too_large
    assert "big" in rejected.problems
    # A zip whose header understates nothing: the bound is on the bytes read out.
    bomb = make_zip([("bomb", b"\0" * 10_000_000)])
    assert len(bomb) < 20_000
    assert problems_of(bomb, small).too_large
    many = make_tar([(f"f{i}", b"x" * 900) for i in range(7)])
    assert problems_of(many, small).too_large
    count = make_tar([(f"f{i}", b"x") for i in range(4)])
    assert problems_of(count, small).problems == {"*": "more than 3 files"}


def test_garbage_is_refused_with_a_reason() -> None:
    rejected = problems_of(b"this is not an archive at all")
    assert "not a readable tar" in rejected.problems["*"]


def test_directory_import(tmp_path: Path) -> None:
    for path, content in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    assert as_dict(read_directory(tmp_path, LIMITS)) == FILES
    os.symlink("/etc/passwd", tmp_path / "src" / "link")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ArchiveRejected) as caught:
        read_directory(tmp_path, LIMITS)
    assert set(caught.value.problems) == {"src/link", "pipe"}
