"""The host names the web process answers besides ALLOWED_HOSTS: wherever PULSE_API_HOST binds it."""

from __future__ import annotations

import socket

WILDCARDS = ("", "0.0.0.0", "::")  # noqa: S104 (recognised, not bound)


def bound_host_names(bind_host: str) -> list[str]:
    """PULSE_API_HOST itself; for a wildcard bind, this machine's name and addresses, so the guide's
    `PULSE_API_HOST=0.0.0.0` answers requests sent to the machine instead of 400 DisallowedHost."""
    host = bind_host.strip().strip("[]")
    if host not in WILDCARDS:
        return [_as_host_header(host)]
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        # A UDP "connect" sends nothing: it only asks the kernel which address would be used.
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                names.add(sock.getsockname()[0])
        except OSError:
            pass
    return sorted(_as_host_header(name.split("%")[0]) for name in names if name)


def _as_host_header(host: str) -> str:
    return f"[{host}]" if ":" in host else host
