"""What the kernel says about a test server's sockets, read from /proc."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LISTEN, ESTABLISHED = "0A", "01"  # /proc/net/tcp's `st` column


def tcp_sockets(port: int, state: str) -> list[list[str]]:
    """The /proc/net/tcp rows (split into fields) of 127.0.0.1:`port`'s own
    sockets in `state`. Fields: 4 is tx_queue:rx_queue (for a listening
    socket, rx_queue is its accept backlog), 9 the inode (0 for a connection
    still in the accept queue, which no process holds yet)."""
    local = f"0100007F:{port:04X}"
    rows = map(str.split, Path("/proc/net/tcp").read_text().splitlines()[1:])
    return [fields for fields in rows if fields[1] == local and fields[3] == state]


def open_files(pid: int) -> list[str]:
    """What process `pid`'s descriptors point to (`socket:[inode]` for a
    socket); empty once it is gone."""
    targets = []
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                targets.append(os.readlink(fd))
    return targets
