"""Is a port free, and if not, who holds it."""

from __future__ import annotations

import errno
import socket

import psutil

from lab_env.errors import LabError


def is_free(host: str, port: int) -> bool:
    """Binds the way a server would (SO_REUSEADDR): TIME_WAIT leftovers do not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def holder(port: int) -> str:
    """A description of the process listening on ``port``, as precise as permissions allow."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return "another process (run as its owner or root to see which)"
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return "another user's process"
            try:
                proc = psutil.Process(conn.pid)
                cmd = " ".join(proc.cmdline()) or proc.name()
            except psutil.Error:
                return f"pid {conn.pid}"
            if len(cmd) > 80:
                cmd = cmd[:77] + "..."
            return f"pid {conn.pid} ({cmd})"
    return "another process"


def require_free(host: str, ports: dict[str, int]) -> None:
    """Raise one sentence per busy port, naming the lab component and the holder."""
    busy = [(what, port) for what, port in ports.items() if not is_free(host, port)]
    if not busy:
        return
    lines = [f"port {port} ({what}) is in use by {holder(port)}" for what, port in busy]
    raise LabError(
        "The lab cannot start: "
        + "; ".join(lines)
        + ". Stop that process, or move the lab to other ports (e.g. KAFKA_LAB_BROKER_PORTS="
        "19192,19193,19194; see `lab config`)."
    )
