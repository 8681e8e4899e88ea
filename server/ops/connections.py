"""OS-level workarounds for the process's sockets and file limits (Linux first).

``abort_connections`` exists because hypercorn shields socket writes: a client that stopped
reading holds its connection task for ever, so shutdown shuts those sockets down under it.
``raise_open_files_limit`` because every SSE stream holds a socket and shells and
containers often start with a soft limit of 1024.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one. Returns the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def abort_connections(urls: list[str]) -> int:
    """``shutdown(SHUT_RDWR)`` every accepted TCP connection of this process on the ports
    in ``urls`` (Linux: found through /proc/self/fd). A blocked send on it then fails with
    EPIPE instead of waiting for a client that never reads. Returns how many."""
    ports = {urlsplit(url).port for url in urls}
    aborted = 0
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    for fd in fds:
        try:
            copy = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:  # not a socket
            os.close(copy)
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.family not in (
                    socket.AF_INET,
                    socket.AF_INET6,
                ):
                    continue
                if sock.getsockname()[1] not in ports:
                    continue
                sock.getpeername()  # listening sockets have no peer: OSError
                sock.shutdown(socket.SHUT_RDWR)
                aborted += 1
            except OSError:
                continue
    return aborted
