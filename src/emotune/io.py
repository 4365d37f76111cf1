"""Atomic file writes, output-path checks and hashing: a crash never leaves a half-written result or checkpoint, and
a run finds out before it starts that it cannot write where it was told to.

Temp files carry the writer's PID (`.out.csv.emotune-<pid>-<random>.tmp`, `.clip.emotune-<pid>.partial.mp4`), so
that the leftovers of a killed run (kill -9, power loss) are recognisable and removed by the next run that writes
beside them (`remove_stale_temps`), while those of a run still in progress are kept.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import OutputError

TEMP_TAG = "emotune"
# .<name>.emotune-<pid>-<random>.tmp (AtomicFile) and .<stem>.emotune-<pid>.partial.<ext> (annotated videos)
_TEMP_RE = re.compile(rf"^\..+\.{TEMP_TAG}-(?P<pid>\d+)(?:-\w+\.tmp|\.partial\.\w+)$")


def temp_name(name: str, pid: int | None = None) -> str:
    """The prefix of a temp file for `name` written by process `pid` (this one by default)."""
    return f".{name}.{TEMP_TAG}-{os.getpid() if pid is None else pid}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one of another user's counts: it may be writing)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: keep the file
    return True


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove emotune temp files in `folder` (only those for `name` when given) whose writer process is gone: what a
    kill -9 or a power cut left behind. Files of live processes are kept. Returns the removed paths; never raises.

    A PID is only meaningful on this machine: two hosts writing into one network folder should not share file names."""
    folder = Path(folder)
    pattern = glob.escape(f".{name}.{TEMP_TAG}-") + "*" if name else f".*.{TEMP_TAG}-*"
    removed = []
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return removed
    for p in candidates:
        m = _TEMP_RE.match(p.name)
        if not m or pid_alive(int(m["pid"])):
            continue
        try:
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _first_existing(path: Path) -> Path:
    p = path.absolute()
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Raise OutputError (one line, naming `what` and `path`) unless `path` is a folder that exists and can be written
    to, or one that can be created: its nearest existing ancestor is a writable folder. Probes by creating (and
    removing) a temp file, which also catches read-only mounts, /proc and root-squashed network folders, where
    os.access says yes. Creates nothing that stays. Call it before any long work that ends by writing into `path`."""
    path = Path(path)
    _probe_dir(path, what, path)
    return path


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Raise OutputError (one line) unless `path` can be written atomically: it is not a folder, not a device, pipe or
    socket (an atomic write replaces the file, which must not happen to /dev/null), and its folder exists and is
    writable or can be created (see `check_writable_dir`). Call it before the work whose result goes there."""
    path = Path(path)
    if str(path).endswith(("/", os.sep)) or path.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name (e.g. {path / 'results.csv'})")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise OutputError(f"{what} {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"{what} {path}: not a regular file (a device, pipe or socket); results are written by "
                          "replacing the file, so name an ordinary file")
    _probe_dir(path.parent, what, path)
    return path


def _probe_dir(folder: Path, what: str, shown: Path) -> None:
    anchor = _first_existing(folder)
    if not anchor.is_dir():
        bad = "is a file, not a folder" if anchor == shown.absolute() else f"cannot be created: {anchor} is not a folder"
        raise OutputError(f"{what} {shown}: {bad}")
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_name("write-probe") + "-", suffix=".tmp", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "read-only file system"}.get(exc.errno, exc.strerror or str(exc))
        raise OutputError(f"{what} {shown}: cannot create files in {anchor} ({reason})") from None


class AtomicFile:
    """A temp file beside `path` that becomes `path` only on `commit()`, whole and fsynced; `discard()` leaves no trace.
    Its name carries this process's PID: a command that writes into a folder calls `remove_stale_temps` on it once, at
    the start, to clear what killed runs left (not here: one scan per file would cost a folder scan per image)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_name(self.path.name) + "-", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should read like any other file
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp)` on a temp file beside `path`, fsync it, then rename it over `path`."""
    f = AtomicFile(path)
    try:
        writer(f.tmp)
        return f.commit()
    except BaseException:
        f.discard()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
