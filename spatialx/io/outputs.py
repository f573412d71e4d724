"""The one output policy: every file a run writes is checked before any work, staged, and renamed into place.

* :class:`OutputPlan` checks all the files of one run together, before anything is computed: none may be an input
  or another output of the same run (compared after resolving symlinks and relative paths, and by inode, so hard
  links count too), an existing file is refused unless the run may overwrite, the directory must exist and accept
  a new file, and rasters must be named ``.tif``/``.tiff`` (products are Cloud-Optimised GeoTIFFs).
* Every file is written to a temporary file next to it (:func:`new_temporary`, :func:`temporary_for`) and renamed
  over it in one step (:func:`publish`, :func:`atomic_write_text`, :func:`atomic_write_bytes`). Temporary names are
  short (``.sx-<random>.tmp<suffix>``), so they fit the file system's name limit whatever the output is called.
* Live temporary files are kept in one process-wide registry. Their owners remove them on failure; the registry
  removes whatever is left at interpreter exit and, under :func:`signal_guard` (the CLI root), at once on
  SIGINT/SIGTERM -- then the run stops with one line on stderr and exit status 130/143.
"""

from __future__ import annotations

import atexit
import os
import secrets
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from os import PathLike
from pathlib import Path

from spatialx.errors import OutputError

TEMP_PREFIX = ".sx-"
#: Part of every temporary name, before the suffix that keeps the file's real extension (``.sx-1a2b3c4d.tmp.tif``).
TEMP_MARK = ".tmp"
RASTER_SUFFIXES = (".tif", ".tiff")
KINDS = ("raster", "sidecar")
#: Used where the file system does not say (``pathconf``); 255 bytes is the limit of every common Unix one.
NAME_MAX_DEFAULT = 255
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: After SIGINT/SIGTERM the main thread unwinds and exits; if the process still runs this many seconds later (the
#: main thread blocked in a long C call such as GDAL's COG copy, or the interpreter waiting for a busy tile worker),
#: it ends itself -- its temporary files are removed by then.
HARD_EXIT_AFTER_S = 2.0

PathArg = str | PathLike[str]


class Interrupted(SystemExit):
    """SIGINT or SIGTERM under :func:`signal_guard`, raised in the main thread.

    A SystemExit, not a KeyboardInterrupt: nothing that catches ``Exception`` swallows it, Typer does not turn it
    into a silent exit (it does that to KeyboardInterrupt), and should it reach the interpreter the exit status is
    still 128 + the signal number.
    """

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


# --------------------------------------------------------------------------------------------------------------
# The registry of live temporary files.


class _Registry:
    """Process-wide state; every field is changed under ``lock`` except those the signal handler sets, which are
    single attribute stores (atomic under the GIL) -- the handler may not take the lock: the main thread it
    interrupts may hold it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.live: dict[str, None] = {}  # absolute temporary paths, in creation order
        self.reset(guarded=False)

    def reset(self, guarded: bool) -> None:
        self.guarded = guarded  # a signal_guard is active: remember published outputs for the interrupt line
        self.published: list[Path] = []
        self.signum: int | None = None  # the first SIGINT/SIGTERM received under the guard
        self.raised = False  # Interrupted was raised in the main thread
        self.closing = False  # the guard is finishing: the handler only records
        self.pending = False  # a signal arrived in a main-thread critical section: raise when it ends
        self.depth = 0  # main-thread critical sections in progress
        self.removed_files = 0  # removed since the signal, by anyone
        self.removed_bytes = 0
        self.reported = False


_reg = _Registry()


@contextmanager
def _critical() -> Iterator[None]:
    """Hold the registry lock; in the main thread, also hold back Interrupted until the block is done, so that a
    signal cannot fall between creating a file and registering it, or between a rename and its bookkeeping."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _reg.depth += 1
    try:
        with _reg.lock:
            yield
    finally:
        if main:
            _reg.depth -= 1
            if _reg.depth == 0 and _reg.pending:
                _reg.pending = False
                _reg.raised = True
                raise Interrupted(_reg.signum or signal.SIGINT)


def _stop_if_interrupted() -> None:
    """Refuse new temporaries and renames once a signal was received (the watchdog may know before the main
    thread's handler has run)."""
    if _reg.signum is not None:
        if threading.current_thread() is threading.main_thread():
            _reg.raised = True  # the handler, when it runs, must not raise a second time into the unwinding
        raise Interrupted(_reg.signum)


def _key(path: PathArg) -> str:
    return os.path.abspath(os.fspath(path))


def _unlink(key: str) -> int | None:
    """Remove one temporary file if it is there; returns the bytes it held (counted once a signal was received)."""
    try:
        info = os.lstat(key)
        os.unlink(key)
    except OSError:  # gone already; or not removable now, and the pass at exit tries again
        return None
    # Allocated size, not apparent: a staging GeoTIFF is sparse while tiles are still being written.
    size = getattr(info, "st_blocks", 0) * 512 or info.st_size
    if _reg.signum is not None:
        _reg.removed_files += 1
        _reg.removed_bytes += size
    return size


def _sweep() -> tuple[int, int]:
    files = size = 0
    for key in list(_reg.live):
        removed = _unlink(key)
        if removed is not None:
            files, size = files + 1, size + removed
    return files, size


def _create(directory: str, suffix: str) -> str:
    """Create an empty temporary file in ``directory`` and register it (call under the lock); OSError when the
    directory refuses."""
    for _ in range(100):
        name = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(4)}{TEMP_MARK}{suffix}")
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        _reg.live[_key(name)] = None
        return name
    raise FileExistsError(f"no free temporary name in {directory}")


def new_temporary(path: PathArg, suffix: str = "") -> Path:
    """Create an empty temporary file next to ``path`` (same directory: the final rename is atomic) and register it.

    The name is ``.sx-<8 hex digits>.tmp<suffix>``, whatever ``path`` is called. The file is created with the
    permissions a new file gets (umask), so the published output has them too.
    """
    directory = os.fspath(Path(path).parent)
    with _critical():
        _stop_if_interrupted()
        try:
            name = _create(directory, suffix)
        except OSError as exc:
            raise OutputError(f"cannot create files in the output directory: {exc.strerror or exc}",
                              path=directory, hint="choose a directory you can write to") from None
    return Path(name)


def discard(temporary: PathArg) -> None:
    """Remove a temporary file (if it is still there) and forget it."""
    key = _key(temporary)
    with _critical():
        _unlink(key)
        _reg.live.pop(key, None)


def publish(temporary: PathArg, path: PathArg) -> Path:
    """Rename the registered ``temporary`` over ``path`` in one step; from then on it is an output, not a temporary.

    Refused (Interrupted) once SIGINT/SIGTERM was received: an interrupted run replaces nothing.
    """
    with _critical():
        _stop_if_interrupted()
        os.replace(temporary, path)
        _reg.live.pop(_key(temporary), None)
        if _reg.guarded:
            _reg.published.append(Path(path))
    return Path(path)


def remove_temporaries() -> tuple[int, int]:
    """Remove every registered temporary file still on disk; returns (files, bytes) removed by this call.

    Idempotent. Paths stay registered until their owner discards or publishes them, so a file that a C library
    re-creates by name after this pass is removed by the next one (the guard's, or the one at exit).
    """
    with _reg.lock:
        return _sweep()


def live_temporaries() -> list[Path]:
    """The registered temporary files (created, neither published nor discarded yet)."""
    with _reg.lock:
        return [Path(key) for key in _reg.live]


def _forget_in_child() -> None:
    # A forked child (data loader workers) must not remove its parent's files at its exit; the lock may have been
    # held by another thread of the parent at the fork.
    _reg.lock = threading.RLock()
    _reg.live.clear()
    _reg.reset(guarded=False)


atexit.register(remove_temporaries)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


@contextmanager
def staged(files: Mapping[str, Path]) -> Iterator[dict[str, Path]]:
    """Registered temporaries for several outputs (``{key: final path}``, each with its final suffix), published
    together when the block ends normally and all removed when it raises: a set of files appears whole or not at
    all."""
    temps: dict[str, Path] = {}
    try:
        for key, path in files.items():
            temps[key] = new_temporary(path, Path(path).suffix)
        yield temps
        for key, temporary in temps.items():
            publish(temporary, files[key])
    except BaseException:
        for temporary in temps.values():
            discard(temporary)
        raise


@contextmanager
def temporary_for(path: PathArg, suffix: str = "") -> Iterator[Path]:
    """A registered temporary file next to ``path``; removed at the end of the block unless it was published."""
    temporary = new_temporary(path, suffix)
    try:
        yield temporary
    finally:
        discard(temporary)  # a no-op on disk once published: the name no longer exists


def atomic_write_bytes(path: PathArg, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file, flushed to disk, and a rename.

    The policy (:class:`OutputPlan`) is checked before; this only writes.
    """
    target = Path(path)
    with temporary_for(target) as temporary:
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            publish(temporary, target)
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror or exc})", path=target) from None
    return target


def atomic_write_text(path: PathArg, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (as :func:`atomic_write_bytes`; line endings kept as given)."""
    return atomic_write_bytes(path, text.encode(encoding))


# --------------------------------------------------------------------------------------------------------------
# The policy.


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """What makes two names the same file: the resolved path, and (dev, inode) when it exists."""
    real = os.path.realpath(path)
    try:
        info = os.stat(path)
    except OSError:
        return real, None
    return real, (info.st_dev, info.st_ino)


def _same(a: tuple[str, tuple[int, int] | None], b: tuple[str, tuple[int, int] | None]) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX_DEFAULT


class OutputPlan:
    """The files one run writes, checked together before any work starts.

    ``inputs`` are the run's input files, as paths or as ``{label: path}`` (the label names them in messages, e.g.
    "MS"); ``None`` entries are skipped. Each :meth:`add` checks one output at once and raises
    :class:`~spatialx.errors.OutputError` (path and hint) when it cannot be written.
    """

    def __init__(self, inputs: Iterable[PathArg | None] | Mapping[str, PathArg | None] = (),
                 overwrite: bool = False):
        items = inputs.items() if isinstance(inputs, Mapping) else (("", p) for p in inputs)
        self.inputs = [(str(label), Path(p)) for label, p in items if p is not None]
        self.overwrite = overwrite
        self.outputs: list[Path] = []
        self._input_ids = [_identity(p) for _, p in self.inputs]
        self._output_ids: list[tuple[str, str, tuple[int, int] | None]] = []
        self._probed: set[str] = set()

    def add(self, path: PathArg, what: str = "output", kind: str = "raster") -> Path:
        """Check ``path`` (``what`` names it in messages; ``kind`` "raster" must be a GeoTIFF, "sidecar" is any
        file) against the inputs, the outputs added before and the file system; returns it as a Path."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        text = os.fspath(path)
        target = Path(text)
        if not text or text.endswith(("/", os.sep)) or target.name in ("", ".", ".."):
            raise OutputError(f"{what} is a directory name", path=text or ".", hint="give a file name, e.g. out.tif")
        try:
            self._check(target, what, kind)
        except OSError as exc:  # e.g. a path through /proc, or a directory that cannot be searched
            raise OutputError(f"cannot create the {what} there: {exc.strerror or exc}", path=target,
                              hint="choose another directory") from None
        self.outputs.append(target)
        return target

    def _check(self, target: Path, what: str, kind: str) -> None:
        parent = target.parent
        size, limit = len(os.fsencode(target.name)), _name_max(parent)
        if size > limit:
            raise OutputError(f"{what} name is {size} bytes, the file system allows {limit}", path=target,
                              hint="choose a shorter name")
        ident = _identity(target)
        for (label, source), source_id in zip(self.inputs, self._input_ids, strict=True):
            if _same(ident, source_id):
                name = f"the {label} input" if label else "an input"
                raise OutputError(f"{what} is the same file as {name} {source}", path=target,
                                  hint="choose another name: inputs are never overwritten")
        for other_what, other, other_id in self._output_ids:
            if _same(ident, other_id):
                raise OutputError(f"{what} is the same file as the {other_what} {other}", path=target,
                                  hint="give each output its own name")
        if target.is_dir():
            raise OutputError(f"{what} is a directory", path=target, hint="give a file name, e.g. out.tif")
        if kind == "raster" and target.suffix.lower() not in RASTER_SUFFIXES:
            found = f", not {target.suffix}" if target.suffix else ""
            raise OutputError(f"{what} must be a GeoTIFF named .tif or .tiff{found}", path=target,
                              hint=f"products are Cloud-Optimised GeoTIFFs: name it {target.stem}.tif")
        if os.path.lexists(target):
            if not self.overwrite:
                raise OutputError(f"{what} exists", path=target, hint="pass --overwrite to replace it")
            mode = os.lstat(target).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                raise OutputError(f"{what} exists and is not a regular file", path=target,
                                  hint="choose a file name")
        if not parent.is_dir():
            raise OutputError("output directory does not exist", path=parent, hint="create it first")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError("output directory is not writable", path=parent,
                              hint="choose a directory you can write to")
        # access() says yes to root everywhere and knows nothing of read-only mounts or /proc: try it.
        if _key(parent) not in self._probed:
            with _critical():
                probe = _create(os.fspath(parent), ".probe")
            discard(probe)
            self._probed.add(_key(parent))
        self._output_ids.append((what, str(target), ident))


# --------------------------------------------------------------------------------------------------------------
# SIGINT / SIGTERM.


def _human(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{size} B"


def interrupt_line() -> str:
    """The one line an interrupted run prints: what was removed, and what (if anything) was written before."""
    name = "" if _reg.signum in (None, signal.SIGINT) else f" ({signal.Signals(_reg.signum).name})"
    files, size = _reg.removed_files, _reg.removed_bytes
    # Without a count when there is none: commands that keep their own temporary files remove them themselves.
    removed = f"; removed {files} temporary file{'' if files == 1 else 's'} ({_human(size)})" if files else ""
    written = (f"already written: {', '.join(map(str, _reg.published))}" if _reg.published
               else "no output was written")
    return f"spatialx: interrupted{name}{removed}; {written}"


def _report() -> None:
    """Print the interrupt line once: the main thread and the watchdog may both get here, and the lock keeps the
    watchdog's hard exit from cutting the main thread's line short."""
    with _reg.lock:
        if not _reg.reported:
            print(interrupt_line(), file=sys.stderr, flush=True)
            _reg.reported = True


def _on_signal(signum: int, frame: object) -> None:
    """The Python-level handler: runs in the main thread between bytecodes, so it may neither block nor take locks."""
    if _reg.signum is None:
        _reg.signum = signum
    if _reg.raised or _reg.closing:
        return  # the run is already stopping; a second signal makes the watchdog end the process
    if _reg.depth:
        _reg.pending = True
        return
    _reg.raised = True
    raise Interrupted(_reg.signum)


def _hard_exit() -> None:
    """End the process now: remove what is left, print the line unless it was printed, skip interpreter shutdown
    (which would wait for the main thread's C call or for busy worker threads)."""
    # A main thread stuck inside a rename (or a print to a blocked stderr) must not keep us waiting.
    locked = _reg.lock.acquire(timeout=1.0)
    try:
        with suppress(RuntimeError):  # the registry changed while we iterated it without the lock
            _sweep()
        if not _reg.reported:
            with suppress(Exception):  # a closed or broken stdout must not stop the exit
                sys.stdout.flush()
            with suppress(OSError):
                os.write(2, (interrupt_line() + "\n").encode(errors="replace"))
            _reg.reported = True
    finally:
        if locked:
            _reg.lock.release()
    os._exit(128 + (_reg.signum or signal.SIGINT))


def _watch(fd: int) -> None:
    """The watchdog: woken through the signal wakeup fd even while the main thread is inside a C call.

    First signal: note it, remove every temporary file at once (disk space comes back as soon as the writers close
    their handles; a SIGKILL that follows finds nothing to leave behind) and start the hard-exit deadline. A second
    signal, or the deadline, ends the process. Returns when the guard closes the pipe before any signal.
    """
    deadline: float | None = None
    seen = 0
    while True:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            _hard_exit()
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            data = os.read(fd, 64) if ready else None
        except OSError:  # the guard closed the pipe
            data = b""
        if data is None:  # the deadline passed
            continue
        if not data:
            if deadline is None:
                with suppress(OSError):
                    os.close(fd)
                return
            time.sleep(max(0.0, deadline - time.monotonic()))
            continue
        for signum in data:
            if signum not in SIGNALS:
                continue
            seen += 1
            if seen > 1:
                _hard_exit()
            if _reg.signum is None:
                _reg.signum = signum
            # Not forever: a main thread stuck in a rename under the lock must not hold off the deadline.
            if _reg.lock.acquire(timeout=HARD_EXIT_AFTER_S):
                try:
                    _sweep()
                finally:
                    _reg.lock.release()
            deadline = time.monotonic() + HARD_EXIT_AFTER_S


@contextmanager
def signal_guard() -> Iterator[None]:
    """For the CLI root: SIGINT/SIGTERM stop the run, remove every temporary file, print one line, exit 130/143.

    In the main thread the signal raises :class:`Interrupted`, so writers abort and context managers unwind as for
    any error, and no output is published any more. A watchdog thread, woken through ``signal.set_wakeup_fd``,
    removes the temporary files at once even while the main thread is inside a C call that does not return to
    Python (GDAL's COG copy), and ends the process if it is still running :data:`HARD_EXIT_AFTER_S` later.
    Outside the main thread this does nothing (signal handlers can only be installed there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _reg.lock:
        _reg.reset(guarded=True)
    # A pipe, not a socket pair: raw descriptors raise no ResourceWarning when an interrupted run exits with them
    # open (the watchdog must keep listening until then). Windows' wakeup fd must be a socket: no watchdog there.
    receiver, sender = os.pipe() if os.name == "posix" else (-1, -1)
    previous_fd = -1
    if sender >= 0:
        os.set_blocking(sender, False)
        previous_fd = signal.set_wakeup_fd(sender, warn_on_full_buffer=False)
        threading.Thread(target=_watch, args=(receiver,), name="spatialx-signal-watchdog", daemon=True).start()
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if sender >= 0:
            signal.set_wakeup_fd(previous_fd)
            os.close(sender)  # the watchdog sees the end of its pipe and returns
        _reg.guarded = False

    try:
        yield
    except BaseException:
        _reg.closing = True
        if _reg.signum is None:
            restore()
            raise
        _finish_interrupted()
    _reg.closing = True
    if _reg.signum is not None:
        _finish_interrupted()
    restore()


def _finish_interrupted() -> None:
    """The main thread's end of an interrupted run. The handlers stay installed: a second signal during the exit
    still reaches the watchdog, whose deadline also bounds the interpreter's wait for busy worker threads."""
    remove_temporaries()
    _report()
    raise SystemExit(128 + (_reg.signum or signal.SIGINT)) from None
