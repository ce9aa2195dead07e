"""File I/O shared by every module: atomic writes (a reader never sees a half-written file, and
the file gets the mode the umask gives), and reads of text / JSON / TOML whose every failure is a
ValueError naming the file."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import tempfile
import threading
from typing import IO, Any, Callable

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli (setup.cfg)
    import tomli as tomllib  # type: ignore[no-redef]


def _new_file_mode(path: str) -> int:
    """The mode ``open(path, "w")`` would leave: an existing file's own, else 0o666 minus the
    umask (mkstemp creates 0o600 whatever the umask says)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "w") -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it over
    ``path`` (os.replace is atomic on POSIX and Windows). ``mode``: "w" (text, UTF-8) or "wb"."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a file path", path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    except OSError as e:  # name the user's path, not the temporary file's
        raise type(e)(e.errno, f"cannot write here ({e.strerror})", path) from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            os.fchmod(f.fileno(), _new_file_mode(path))
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename == tmp:
            raise type(e)(e.errno, e.strerror, path) from None  # the user's path, not ours
        raise


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C (SIGINT) held back while the block runs, then handled as it would have been.

    Why: a KeyboardInterrupt raised inside torch.save leaves its zip writer half-written, and the
    writer's clean-up then raises a RuntimeError ("unexpected pos") in its place, so that hwq train
    ended with a traceback and status 1 instead of its clean interrupted exit (130) when Ctrl-C hit
    a checkpoint being written. Python runs signal handlers in the main thread only; elsewhere
    nothing is deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    frames = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: frames.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if frames:
            if callable(old):  # a Python handler (the CLI's, or the default one): it raises
                old(signal.SIGINT, frames[0])
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)
            elif old is None:  # a handler not installed from Python: the default behaviour
                raise KeyboardInterrupt


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """torch.save ``obj`` to ``path`` atomically; a Ctrl-C meanwhile takes effect once the file is
    complete (interrupts_deferred)."""
    import torch  # here: this module is imported by code that needs no torch

    with interrupts_deferred():
        atomic_write(path, lambda f: torch.save(obj, f), mode="wb")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text))


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path``; ValueError naming ``what`` and the path when it is not UTF-8.
    OSError (missing file, a directory) passes through: the CLI reports it with the path."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path!r} is not UTF-8 text (byte {e.start}: "
                         f"{data[e.start:e.start + 1]!r})") from None


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value in ``path``; ValueError naming ``what`` and the path when the file is not
    UTF-8, not JSON, or nested too deeply for the parser."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {os.fspath(path)!r} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{what} {os.fspath(path)!r} is nested too deeply to read") from None


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The TOML table in ``path``; ValueError naming ``what`` and the path when the file is not
    UTF-8 or not TOML."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what} {os.fspath(path)!r} is not valid TOML: {e}") from None
    except RecursionError:
        raise ValueError(f"{what} {os.fspath(path)!r} is nested too deeply to read") from None
