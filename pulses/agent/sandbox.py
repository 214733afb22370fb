"""The agent's sandbox: the bubblewrap (`bwrap`) prefix of its argv. No ORM here.

The agent is untrusted code with a shell (a prompt can inject anything), running as Reeve's own user,
so file modes cannot keep it from Reeve's files. Under bubblewrap it gets:

- its own PID namespace with a fresh `/proc`: no Reeve process (worker, gunicorn, reaper, listener)
  is visible, so no `/proc/PID/environ` or `/proc/PID/fd` of theirs can be read; bwrap is the
  namespace's init, so when the agent exits every process it left behind (detached with `setsid` or
  not) dies with it, and `--die-with-parent` ends it all if the worker dies;
- `/` read-only, a private `/tmp` (PostgreSQL's default socket folder among other things), and
  writable only its HOME (Claude Code's login in `~/.claude` and `~/.claude.json`, Hapi's `~/.hapi`)
  and the Desk; Reeve's checkout stays read-only even inside HOME, so its code cannot be changed;
- Reeve's private paths masked: an empty tmpfs over each folder (REEVE_HOME with the secret key, the
  default database, logs, backups, metrics; the database's and the log file's folders wherever they
  are), `/dev/null` over each file (`.env`, the SQLite database with its -wal/-shm/write gate when its
  folder cannot be hidden whole), and PostgreSQL's Unix socket folders;
- no capabilities, when the worker runs as root (else it could unmount the masks).

The network stays shared: the agent reaches its model's API, and Reeve's API on loopback with its
run token. Masks come after the writable binds (HOME may hold REEVE_HOME or the checkout) and the Desk
is bound again after the masks when it lies inside one (a Desk inside REEVE_HOME).

No `--new-session`: the worker stops a run by signalling its process group, which bwrap and the agent
share. bwrap does not forward SIGTERM: a stopped run's agent ends at once with its namespace.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

AUTO, BWRAP, OFF = "auto", "bwrap", "off"
MODES = (AUTO, BWRAP, OFF)
BWRAP_COMMAND = "bwrap"
# Where PostgreSQL's server puts its Unix socket on Debian/Ubuntu and others; /tmp is private anyway.
POSTGRES_SOCKET_DIRS = (Path("/run/postgresql"), Path("/var/run/postgresql"))
TRIAL_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Layout:
    """What the agent's sandbox keeps writable, read-only and hidden."""

    home: Path
    desk: Path
    read_only: tuple[Path, ...] = ()  # inside a writable folder, kept read-only (Reeve's checkout)
    masked: tuple[Path, ...] = ()  # folders become an empty tmpfs, files /dev/null


@dataclass(frozen=True)
class Containment:
    """Which containment a setting gives: `bwrap` or `none`, and why (or what is wrong)."""

    mode: str  # the setting: auto, bwrap, off
    active: str  # "bwrap" or "none"
    problem: str = ""  # a setup problem: nothing may run (AGENT_SANDBOX=bwrap without a working bwrap)
    note: str = ""  # why there is none (auto without bwrap, off)


@functools.cache
def bwrap_problem(command: str = BWRAP_COMMAND) -> str:
    """Why bubblewrap cannot run the agent here ("" when it can): not installed, or a trial sandbox
    (the same namespaces the agent gets) fails, e.g. where unprivileged user namespaces are off."""
    found = shutil.which(command)
    if not found:
        return f"{command} is not installed (Debian/Ubuntu: sudo apt-get install bubblewrap)"
    trial = [found, *_base_options(), "--", "/bin/true"]
    try:
        proc = subprocess.run(  # noqa: S603 - a fixed argv
            trial, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found} does not run: {exc}"
    if proc.returncode != 0:
        return f"{found} cannot make a sandbox here: {proc.stderr.strip()[-300:] or proc.returncode}"
    return ""


def containment(mode: str) -> Containment:
    """What AGENT_SANDBOX=`mode` gives on this machine."""
    if mode == OFF:
        return Containment(mode, "none", note="AGENT_SANDBOX=off")
    if mode not in MODES:
        return Containment(mode, "none", problem=f"AGENT_SANDBOX={mode!r}: use auto, bwrap or off")
    problem = bwrap_problem()
    if not problem:
        return Containment(mode, BWRAP)
    if mode == BWRAP:
        return Containment(mode, "none", problem=f"AGENT_SANDBOX=bwrap but {problem}")
    return Containment(mode, "none", note=problem)


def _base_options() -> list[str]:
    options = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]  # noqa: S108
    options += ["--unshare-pid", "--die-with-parent"]
    if os.geteuid() == 0:  # root keeps every capability in the sandbox otherwise: umount, ptrace, ...
        options += ["--cap-drop", "ALL"]
    return options


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _real(paths: Iterable[Path]) -> list[Path]:
    """Existing paths, symlinks resolved (bwrap mounts on the real path), without duplicates."""
    seen: dict[Path, None] = {}
    for path in paths:
        try:
            real = Path(path).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real != Path("/"):
            seen.setdefault(real, None)
    return list(seen)


def _mask(path: Path) -> list[str]:
    return ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]


def prefix(layout: Layout, *, command: str = BWRAP_COMMAND) -> list[str]:
    """The bwrap argv that runs a command as `layout` says (the agent's argv follows it)."""
    writable = sorted(_real([layout.home, layout.desk]), key=lambda p: len(p.parts))
    read_only = _real(layout.read_only)
    home, desk = _real([layout.home]), _real([layout.desk])
    # A folder that is or holds HOME, or is the Desk, is never hidden whole (its files still are).
    masked = [
        path
        for path in _real(layout.masked)
        if path.is_file() or not any(_inside(place, path) for place in home) and path not in desk
    ]
    # A path inside a folder hidden whole needs no mask of its own (outside the rebound Desk).
    top = [path for path in masked if not any(_inside(path, m) and path != m for m in masked if m.is_dir())]
    argv = [shutil.which(command) or command, *_base_options()]
    for place in writable:
        argv += ["--bind", str(place), str(place)]
    for path in read_only:
        argv += ["--ro-bind", str(path), str(path)]
    for path in top:
        argv += _mask(path)
    # The Desk inside a hidden folder is bound again, and what is hidden inside it hidden again.
    rebound = [place for place in writable if any(_inside(place, m) and place != m for m in top)]
    for place in rebound:
        argv += ["--bind", str(place), str(place)]
        argv += [arg for path in masked if _inside(path, place) for arg in _mask(path)]
    return [*argv, "--"]


def hidden_from_agent(path: Path, layout: Layout) -> Path | None:
    """The folder (or file) that hides `path` from a run contained as `layout` says: the private /tmp
    or one of Reeve's masked paths; None when the agent sees it (its home, the Desk, the checkout and
    the rest of / are there)."""
    [real] = _real([path]) or [Path(path)]
    if any(_inside(real, desk) for desk in _real([layout.desk])):
        return None  # bound again over any mask
    for hidden in _real(layout.masked):  # masks are mounted over the binds
        if _inside(real, hidden):
            return hidden
    if any(_inside(real, place) for place in _real([layout.home, *layout.read_only])):
        return None
    tmp = Path("/tmp")  # noqa: S108 - the sandbox's own, private /tmp
    return tmp if _inside(real, tmp) else None


def command_problem(executable: str | None, argv: Iterable[str] = ()) -> str:
    """Why a contained run could not start the agent command found at `executable` ("" when it can):
    a command installed among Reeve's masked paths would fail every run with "bwrap: execvp"."""
    if not executable:
        return ""  # not found at all: the agent command's own check says so
    if hidden := hidden_from_agent(Path(executable), reeve_layout(argv)):
        return (
            f"the agent command {executable} lies in {hidden}, which the sandbox hides from the agent "
            "(AGENT_SANDBOX): install it elsewhere (npm install -g, or under your home), or set "
            "AGENT_SANDBOX=off"
        )
    return ""


def setup_problem(mode: str, argv: list[str]) -> str:
    """What keeps every contained run of `argv` (the agent command) from starting, "" when nothing
    does: AGENT_SANDBOX=bwrap without a working bubblewrap, or a command the sandbox would hide."""
    if mode == OFF:
        return ""
    contained = containment(mode)
    if contained.problem or contained.active != BWRAP:
        return contained.problem
    return command_problem(shutil.which(argv[0]) if argv else None, argv)


def postgres_socket_dirs(database_url: str) -> list[Path]:
    """PostgreSQL's usual socket folders, plus DATABASE_URL's host when it is a path."""
    folders = list(POSTGRES_SOCKET_DIRS)
    if database_url:
        parts = urlsplit(database_url)
        hosts = [parts.hostname or "", *parse_qs(parts.query).get("host", [])]
        if "@/" in database_url or parts.netloc.startswith("%2F"):
            hosts.append(parts.netloc.rpartition("@")[2].replace("%2F", "/").split(":")[0])
        folders += [Path(host) for host in hosts if host.startswith("/")]
    return folders


def linked_targets(folder: Path) -> list[Path]:
    """Where the top-level links of `folder` lead (a checkout's `.venv` shared with another, say)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return [entry.resolve() for entry in entries if entry.is_symlink() and entry.exists()]


def command_folders(argv: Iterable[str]) -> list[Path]:
    """The folders the agent's own command lives in: those of its program and of every absolute path
    among its options (a script the program runs), as written and where their links lead. A command
    installed under /tmp, which the sandbox makes private, stays reachable that way."""
    words = list(argv)
    words = words[: words.index("--")] if "--" in words else words
    if words and (found := shutil.which(words[0])):
        words[0] = found
    folders: list[Path] = []
    for word in words:
        path = Path(word)
        if path.is_absolute() and path.exists():
            folders += [path.parent, path.resolve().parent]
    return folders


def reeve_layout(argv: Iterable[str] = ()) -> Layout:
    """The layout for this installation, from the settings, for the agent command `argv`: what
    `prefix` needs. The checkout, where its top-level links lead and the command's own folders are
    read-only; Reeve's private paths are masked over them all."""
    from django.conf import settings

    from pulses.ops.private_files import SQLITE_SIDE_FILES, private_paths

    folders, files = private_paths()
    base = Path(settings.BASE_DIR)
    db = Path(settings.PULSE_DB_PATH)
    extra_files = [db.with_name(db.name + suffix) for suffix in SQLITE_SIDE_FILES]
    extra_files += [
        Path(settings.SECRET_KEY_FILE),
        Path(settings.REEVE_LOCK_FILE),
        base / ".env",
    ]
    extra_folders = [Path(settings.REEVE_HOME), Path(settings.PROMETHEUS_MULTIPROC_DIR)]
    extra_folders += postgres_socket_dirs(settings.DATABASE_URL)
    home = Path(os.environ.get("HOME") or Path.home())
    return Layout(
        home=home,
        desk=Path(settings.REEVE_DESK_PATH),
        read_only=(base, *linked_targets(base), *command_folders(argv)),
        masked=tuple([*extra_folders, *folders, *files, *extra_files]),
    )


def sandbox_environment(mode: str) -> dict[str, str]:
    """What a contained run's environment adds: REEVE_HOME, hidden inside, so that Reeve's own MCP
    server (started by the agent, without `.env`) keeps its scratch files (a key, a log line) in that
    empty tmpfs instead of a `~/.reeve` in the agent's writable home."""
    if containment(mode).active != BWRAP:
        return {}
    from django.conf import settings

    return {"REEVE_HOME": str(Path(settings.REEVE_HOME).expanduser())}


def sandbox_prefix(mode: str, argv: Iterable[str] = ()) -> list[str]:
    """The argv prefix AGENT_SANDBOX=`mode` gives the agent command `argv` here: bwrap's, or [] when
    uncontained."""
    if containment(mode).active != BWRAP:
        return []
    return prefix(reeve_layout(argv))
