"""Whether the web process can have its address, asked before gunicorn tries (and retries) to bind."""

from __future__ import annotations

import errno
import socket


class PortInUse(Exception):
    """PULSE_API_HOST:PULSE_API_PORT is taken by another program."""


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUse, naming PULSE_API_PORT, when `host:port` cannot be bound; return when it can.

    Bound as gunicorn binds (SO_REUSEADDR), so a port a stopped Reeve left in TIME_WAIT counts as free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"{host}:{port} is already in use by another program (`ss -tlnp | grep :{port}` names it): "
                f"stop it, or give Reeve another port: PULSE_API_PORT={port + 1} in .env"
            ) from None
