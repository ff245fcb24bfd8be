"""Ctrl-C and SIGTERM stop a run at once, keep nothing of the month in flight, and exit 1.

dlt catches the first SIGINT/SIGTERM while it normalizes and loads, only raises a flag between its steps and
forgets it when the step ends: a signal that arrives while a month is written would be swallowed and the run
would go on. The package therefore turns dlt's interception off for its pipelines (`make_pipeline`) and the CLI
runs under `stop_on_signals`: either signal raises `Interrupted` in the main thread, wherever it is.

A database statement already running on one of dlt's loader threads cannot be interrupted from Python, and dlt
waits for its loader threads as the exception unwinds. So a run that has not ended `STOP_GRACE` seconds after
the signal ends its process itself (exit 1) once it has removed its scratch folders: what it leaves is what
`kill -9` leaves, which the next run recovers from (the fault suite proves it at every step of a load): the
statement's transaction is never committed (the database discards it when it sees the connection gone: Postgres
once the statement ends, Snowflake may let a detached query run on first), dlt's unfinished package is
discarded, the month is loaded again. A second signal ends the process the same way without waiting.

A process killed with -9 removes nothing: its scratch folders (a month's download, 1 GB for fhvhv) stay in the
temporary folder. Each holds a marker file that its process keeps locked while it uses the folder, and the OS
unlocks when the process dies; the next run removes the folders whose marker is unlocked
(`remove_dead_scratch_folders`), never one a live run or worker uses.

A library may catch the `Interrupted` its call raised and raise its own error instead (DuckDB stops its query and
raises "Query interrupted"): the run still stops as interrupted. `stopping()` tells code that would treat that error
as a failed month, and an error leaving `stop_on_signals` after a signal becomes `Interrupted`.

A signal that arrives while a finalizer runs on the main thread (the garbage collector closing a connection pool)
raises `Interrupted` inside it, where Python only prints it and goes on; the signal is then delivered once more,
so the run still stops at once, with its one line and no traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

STOP_GRACE = 2.0
"""Seconds a stopped run may take to unwind before its process ends itself."""
REDELIVER_AFTER = 0.05
"""Seconds after a finalizer swallowed the signal's `Interrupted` that the main thread gets the signal again."""
EXIT_INTERRUPTED = 1
SIGNALS = (signal.SIGINT, signal.SIGTERM)
SCRATCH_PREFIX = "taxi_pipeline_"
"""The name of every scratch folder starts so, in the temporary folder (`make_scratch_folder`)."""
SCRATCH_MARKER = ".taxi_pipeline_scratch.lock"
"""A file in each scratch folder, locked (`flock`) by the process using the folder for as long as it does."""

_scratch: Dict[str, int] = {}
"""This process's scratch folders, each with the descriptor holding its marker's lock."""
_children: Set[int] = set()
_lock = threading.RLock()  # re-entrant: a second signal may arrive while the main thread holds it
_reported = threading.Event()
_last_words: Optional[Callable[[str], Optional[str]]] = None
_received: List[int] = []
"""The signal that stopped the run in the block of `stop_on_signals` (one at most: a second ends the process)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM (a scheduler's kill or timeout)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


def interrupted_message(exc: BaseException) -> str:
    """The one line a stopped run prints."""
    name = getattr(exc, "signal_name", "SIGINT")
    return f"interrupted by {name}: loaded months are kept, the month in flight is not; run again to go on"


def stopping() -> Optional[Interrupted]:
    """The run's `Interrupted` if a signal stopped it: an error caught meanwhile may be a library's form of it."""
    return Interrupted(_received[0]) if _received else None


def mark_reported() -> None:
    """Tell a later forced stop that the run's error line is printed already."""
    _reported.set()


def make_scratch_folder() -> str:
    """A new temporary folder for downloads and load files, removed by a forced stop if still there.

    Its marker (`SCRATCH_MARKER`) is locked until `remove_scratch_folder`, or until the process dies: then a later
    run removes it (`remove_dead_scratch_folders`). The marker takes its name only once locked, so no run ever
    sees the marker of a live folder unlocked.
    """
    folder = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    staging = os.path.join(folder, SCRATCH_MARKER + ".new")
    fd = -1
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new file in a new private folder: never waits
        os.rename(staging, os.path.join(folder, SCRATCH_MARKER))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if fd >= 0:
            os.close(fd)
        raise
    with _lock:
        _scratch[folder] = fd
    return folder


def remove_scratch_folder(folder: str) -> None:
    """Remove a folder made by `make_scratch_folder`."""
    shutil.rmtree(folder, ignore_errors=True)  # first: a forced stop meanwhile still knows the folder
    with _lock:
        fd = _scratch.pop(folder, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # releases the marker's lock, once the folder is gone


def remove_dead_scratch_folders() -> List[str]:
    """Remove the scratch folders that processes of this package left behind as they died (`kill -9`, a crash).

    Only in the temporary folder of this process (`tempfile.gettempdir()`: TMPDIR, else /tmp), only folders that
    are ours (named `SCRATCH_PREFIX…`, of this user, holding `SCRATCH_MARKER`) and whose marker no process has
    locked: its maker holds that lock until it removes the folder, and the OS releases it when the process dies,
    whatever becomes of its pid. Folders of live runs and of their workers are left alone, and so is anything
    else. Never raises: what cannot be removed stays. Returns the folders removed.
    """
    try:
        entries = [e for e in os.scandir(tempfile.gettempdir()) if e.name.startswith(SCRATCH_PREFIX)]
    except OSError:
        return []
    return [entry.path for entry in entries if _remove_if_dead(entry)]


def _remove_if_dead(entry: os.DirEntry) -> bool:
    """Remove the scratch folder `entry` if its marker is unlocked (its process is dead); True when removed."""
    marker = os.path.join(entry.path, SCRATCH_MARKER)
    try:
        if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
            return False
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # no marker: not ours (or still being made); or it went meanwhile
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked, now = os.fstat(fd), os.stat(marker, follow_symlinks=False)
        except OSError:  # held: its process lives (this one's included); or the folder went meanwhile
            return False
        if (locked.st_dev, locked.st_ino) != (now.st_dev, now.st_ino):
            return False  # removed by another run meanwhile, and its name taken by a new folder
        shutil.rmtree(entry.path, ignore_errors=True)  # under the lock: no other run removes it meanwhile
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_folder() -> Iterator[str]:
    """`make_scratch_folder` for the block, removed after it."""
    folder = make_scratch_folder()
    try:
        yield folder
    finally:
        remove_scratch_folder(folder)


def adopt(pid: int) -> None:
    """A child process (a worker, see `workers`) that a forced stop ends with its run (SIGKILL)."""
    with _lock:
        _children.add(pid)


def disown(pid: int) -> None:
    """A child process that has ended, or that its run has stopped itself."""
    with _lock:
        _children.discard(pid)


def _force_stop(signal_name: str) -> None:
    """End the process now: kill its workers, remove the scratch folders, say why (once), exit 1 without waiting."""
    with _lock:
        folders = list(_scratch)
        children = list(_children)
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    if not _reported.is_set():
        message = interrupted_message(Interrupted(signal.Signals[signal_name]))
        document = _last_words(message) if _last_words is not None else None
        if document:  # a scheduler reading stdout gets its one document all the same
            with contextlib.suppress(OSError):
                os.write(1, document.encode())
        with contextlib.suppress(OSError):
            os.write(2, f"error: {message}\n".encode())
    os._exit(EXIT_INTERRUPTED)


def set_last_words(document: Optional[Callable[[str], Optional[str]]]) -> None:
    """What a forced stop writes on stdout before it ends the process: `document(message)`, unless None.

    The CLI's `--json` and `--kestra` promise one document on stdout whatever happens; a run stopped past its
    grace never gets back to the CLI to print it, so the CLI leaves it here.
    """
    global _last_words
    _last_words = document


@contextlib.contextmanager
def stop_on_signals(grace: float = STOP_GRACE) -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread for the block; see the module docstring.

    After the first signal, the process ends itself if it is still alive `grace` seconds later; a second signal
    ends it at once. A run that unwinds to the end of the block has nothing left to wait for (dlt joins its loader
    threads as the exception passes), so the timer is cancelled there: a caller of the CLI in its own process
    lives on. A signal its parent set to be ignored (SIGINT of a background job) stays ignored. A no-op outside
    the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    timers: List[threading.Timer] = []
    swallowed: List[int] = []  # the signal whose `Interrupted` a finalizer swallowed, to raise once more

    def handler(signum: int, _frame: Optional[Any]) -> None:
        name = signal.Signals(signum).name
        if swallowed:  # the first signal again, after a finalizer swallowed it: not a second signal
            swallowed.clear()
            raise Interrupted(signum)
        if _received:
            _force_stop(signal.Signals(_received[0]).name)
        _received.append(signum)
        timer = threading.Timer(grace, _force_stop, (name,))
        timer.daemon = True
        timer.start()
        timers.append(timer)
        raise Interrupted(signum)

    def unraisable(hook_args: Any) -> None:
        # The signal came while a finalizer (`__del__`, a weakref callback) ran on the main thread: Python prints
        # what the finalizer raises, as a traceback, and goes on. Instead nothing is printed, and the signal is
        # sent to the main thread once more from another thread, after this hook and the finalizer have returned
        # (raised in either, it would be swallowed again): the run stops at once and says so in one line.
        if isinstance(hook_args.exc_value, Interrupted):
            signum = signal.Signals[hook_args.exc_value.signal_name]
            swallowed[:] = [signum]
            again = threading.Timer(REDELIVER_AFTER, signal.pthread_kill, (threading.main_thread().ident, signum))
            again.daemon = True
            again.start()
            return
        previous_hook(hook_args)

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    previous_hook = sys.unraisablehook
    for sig, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(sig, handler)
    sys.unraisablehook = unraisable
    try:
        yield
    except Exception as exc:  # a library's own form of the signal's `Interrupted` ("Query interrupted")
        interrupt = stopping()
        if interrupt is not None:
            raise interrupt from exc
        raise
    finally:
        _received.clear()
        sys.unraisablehook = previous_hook
        for sig, old in previous.items():
            signal.signal(sig, old)
        for timer in timers:  # unwound this far: dlt has joined its loader threads, nothing is left to wait for
            timer.cancel()
