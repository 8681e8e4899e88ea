"""The one error the bench raises for what a user can fix (bad target, refused host, failed setup).

The CLI prints it on one line and exits 2 (usage) or 1 (a run that could not measure).
"""

from __future__ import annotations


class BenchError(Exception):
    """A bench run cannot start or cannot go on; the message says why, in one sentence."""
