"""Guards of a run folder: one training at a time (`RunLock`), and the metrics log read back with
its damage named (`read_records`).

The lock is an advisory `fcntl.flock` on RUN/.lock, held for as long as the training runs; the file
records who holds it. The kernel releases a flock when its process dies, however it dies, so a
lock left behind by a killed process is simply taken over (with a warning naming that process).
On systems without `fcntl` (Windows) folders are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from vlmt.errors import DataError, TrainingError

LOCK = ".lock"


class RunLock:
    """`with RunLock(run_dir):` - TrainingError naming the folder and the holding process when
    another training holds it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no advisory locks here
            return self
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise TrainingError(f"{self.path}: cannot create the run folder's lock ({e.strerror})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder()
            os.close(self.fd)
            self.fd = None
            who = (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
                   if holder else "another process")
            raise TrainingError(f"{self.path.parent}: busy: a training ({who}) is writing this run folder; wait "
                                f"for it to finish or choose another --out") from None
        previous = self._holder()
        if previous and (previous.get("pid"), previous.get("host")) != (os.getpid(), socket.gethostname()):
            print(f"warning: {self.path.parent}: took over the lock left by process {previous.get('pid')} on "
                  f"{previous.get('host')} (since {previous.get('since')}), which no longer holds it",
                  file=sys.stderr)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, record, 0)
        return self

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def __exit__(self, *_: object) -> None:
        if self.fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self.fd, 0)  # an empty lock file: nobody holds it
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def read_records(path: str | os.PathLike, *, cut_last_line: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of every record of a metrics log (metrics.jsonl); a line that is not a record
    with an integer "step" is a DataError naming the file and the line. `cut_last_line`: a last
    line cut short (a process killed while writing it; resuming runs its step again) is dropped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason}); damaged?") from None
    except OSError as e:
        raise DataError(path, f"unreadable ({e.strerror})") from None
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problem, field = None, None
        try:
            record = json.loads(line)
        except ValueError as e:
            problem = f"not JSON ({getattr(e, 'msg', e)})"
        else:
            if not isinstance(record, dict):
                problem = "not a JSON object"
            elif "step" not in record:
                problem, field = "missing", "step"
            elif not isinstance(record["step"], int) or isinstance(record["step"], bool):
                problem, field = f"must be an integer, got {record['step']!r}", "step"
        if problem is not None:
            if cut_last_line and n == len(lines):
                break
            raise DataError(path, problem, record=f"line {n}", field=field)
        out.append((line, record))
    return out
