"""The review's unified diff: pure, bounded, binary-aware."""

from __future__ import annotations

import trio

from server.vfs import review
from server.vfs.review import MAX_DIFF_BYTES, diff_of, unified_diff


def test_modify_create_delete() -> None:
    diff, cut = unified_diff("a.txt", b"one\ntwo\n", b"one\n2\n")
    assert not cut
    assert diff == "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n"
    created, _ = unified_diff("n.txt", None, b"x\n")
    assert created is not None
    assert created.startswith("--- /dev/null\n+++ b/n.txt\n")
    deleted, _ = unified_diff("d.txt", b"x\n", None)
    assert deleted is not None
    assert deleted.startswith("--- a/d.txt\n+++ /dev/null\n")
    assert unified_diff("same.txt", b"x\n", b"x\n") == ("", False)


def test_missing_final_newline_is_marked() -> None:
    diff, _ = unified_diff("a.txt", b"a", b"b")
    assert diff is not None
    assert diff.endswith("-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n")


def test_binary_content_has_no_diff() -> None:
    assert unified_diff("img.png", b"\x89PNG\xff\x00", b"\x89PNG\xfe") == (None, False)


def test_big_diffs_are_cut() -> None:
    after = b"".join(b"line %d\n" % i for i in range(100_000))
    diff, cut = unified_diff("big.txt", b"", after)
    assert cut
    assert diff is not None
    assert len(diff) <= MAX_DIFF_BYTES
    assert diff.startswith("--- a/big.txt\n")


async def test_big_files_are_diffed_in_a_worker_thread() -> None:
    before = b"a\n" * 40_000  # over the inline threshold together
    after = before + b"b\n"
    seen: list[bool] = []
    real = review.unified_diff

    def spy(path: str, old: bytes | None, new: bytes | None) -> tuple[str | None, bool]:
        seen.append(trio.lowlevel.in_trio_run())
        return real(path, old, new)

    review.unified_diff = spy  # type: ignore[assignment]
    try:
        diff, _ = await diff_of("f.txt", before, after)
        await diff_of("small.txt", b"a\n", b"b\n")
    finally:
        review.unified_diff = real
    assert diff is not None
    assert diff.endswith("+b\n")
    assert seen == [False, True]  # the big one ran outside the event loop's thread
