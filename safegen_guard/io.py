"""Durable file writes and append-only JSONL logs (nothing half-written, nothing lost).

Every writer in SAFEGEN (records, images, checkpoints) goes through :func:`atomic_write_bytes`:
the data goes to a temporary file in the target folder, is flushed and ``fsync``-ed, renamed
over the target and the folder is ``fsync``-ed. A crash leaves the old file or the complete
new one, never a mix, and at worst a ``.<name>.<random>.tmp`` file that
:func:`remove_stale_temp_files` removes at the next start.

:func:`append_jsonl` writes whole lines or nothing: a short write (full disk, file size limit)
is retried, and on failure the file is cut back to its previous length before the error is
raised. Files are created with the mode the process umask allows and a replaced file keeps
its mode (both like ``open``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_extend_jsonl",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "append_jsonl",
    "json_bytes",
    "read_jsonl",
    "repair_jsonl",
    "remove_stale_temp_files",
    "TEMP_SUFFIX",
]

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary files of :func:`atomic_write_bytes` (``.<name>.<random>.tmp``)."""
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    """The process umask, read without changing it where ``/proc`` allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a short write is retried, never ignored).

    Raises:
        OSError: the system refused to write more (e.g. ``ENOSPC``, ``EFBIG``).
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - POSIX raises instead of returning 0 for files
            raise OSError(f"os.write wrote {n} bytes; {len(view)} bytes left unwritten")
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` durably: temp file in the same folder, fsync, rename, fsync.

    Readers see either the old file or the complete new one, never a partial write. Parent
    folders are created. A new file's mode follows the umask (``0o666 & ~umask``); a replaced
    file keeps its mode.

    Args:
        path: the target file.
        data: its complete new content.
        exclusive: never replace an existing ``path`` (the temp file is hard-linked into
            place, which fails if the name exists).

    Raises:
        FileExistsError: ``exclusive`` and ``path`` exists.
        OSError: the data could not be written; the old file (if any) is untouched and the
            temporary file removed.
    """
    with _replacing(Path(path), exclusive=exclusive) as fd:
        _write_all(fd, data)
    return Path(path)


@contextlib.contextmanager
def _replacing(path: Path, *, exclusive: bool = False) -> Iterator[int]:
    """Yield the descriptor of a temp file beside ``path``; then fsync it and rename it there.

    A new file's mode follows the umask (``0o666 & ~umask``); a replaced file keeps its mode,
    as ``open(path, "w")`` would (a log the user made private stays private). The rename is
    ``os.replace`` (or a hard link that refuses an existing name with ``exclusive``) followed
    by an fsync of the folder. On any error the temp file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _link_new(tmp: str, path: Path) -> None:
    """Give the finished temp file the name ``path`` unless that name exists already."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # pragma: no cover - file systems without hard links
        if path.exists():
            raise FileExistsError(f"{path} exists; refusing to overwrite it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any) -> bytes:
    """The canonical JSON encoding SAFEGEN writes: indented, key-sorted, final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, exclusive: bool = False) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (:func:`json_bytes`), atomically."""
    return atomic_write_bytes(path, json_bytes(obj), exclusive=exclusive)


def append_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """Append one JSON line per record: all of them, durably, or none.

    The lines are written with ``O_APPEND`` (short writes retried) and ``fsync``-ed. If the
    write fails (full disk, file size limit), the file is cut back to its length before the
    call and the error re-raised, so no partial line is left to swallow the next append.
    An audit log is append-only: existing lines are never rewritten.

    Raises:
        OSError: the records could not be written (none of them were kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    if not payload:
        return path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            _write_all(fd, payload.encode("utf-8"))
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    return path


def atomic_extend_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Replace ``path`` by its lines plus one line per record, atomically and streaming.

    The old lines are copied block by block and the records written in blocks into a temp
    file in the same folder, which is fsync-ed and renamed over ``path``: readers (and a run
    killed at any point) see the old file or the complete new one, and neither the old file
    nor the records are ever held in memory at once. An unfinished last line of the old file
    is dropped. Nothing is written when ``records`` is empty.

    Raises:
        OSError: the new file could not be written; ``path`` is untouched.
    """
    path = Path(path)
    records = iter(records)
    first = next(records, None)
    if first is None:
        return path
    with _replacing(path) as fd:
        if path.is_file():
            with open(path, "rb") as old:
                tail = b""
                for block in iter(lambda: old.read(1 << 20), b""):
                    data = tail + block
                    keep = data.rfind(b"\n") + 1
                    _write_all(fd, data[:keep])
                    tail = data[keep:]
        for chunk in _chunks(_json_lines(itertools.chain([first], records))):
            _write_all(fd, chunk)
    return path


def _json_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for r in records:
        yield json.dumps(r, sort_keys=True, default=str) + "\n"


def _chunks(lines: Iterable[str], size: int = 1 << 20) -> Iterator[bytes]:
    """UTF-8 blocks of about ``size`` bytes made of whole lines."""
    buf: list[bytes] = []
    n = 0
    for line in lines:
        buf.append(line.encode("utf-8"))
        n += len(buf[-1])
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file (``[]`` when the file does not exist).

    Raises:
        ValueError: a complete line is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n} is not a JSON line: {err}") from err
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{n} must hold a JSON object, got {type(rec).__name__}")
        out.append(rec)
    return out


def repair_jsonl(path: str | os.PathLike) -> int:
    """Cut an unfinished last line (a write killed mid-way) off a JSONL log; log what was cut.

    Returns:
        The number of bytes removed (0 when the file ends with a newline or does not exist).
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "r+b") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    cut = len(data) - keep
    log.warning(
        "%s: removed an unfinished last line (%d bytes) left by an interrupted write", path, cut
    )
    return cut


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_write_bytes` calls left.

    Only names of the form ``.<name>.<random>.tmp`` directly in ``directory`` are removed;
    each removal is logged as a warning.

    Returns:
        The removed paths (empty when ``directory`` does not exist).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.iterdir()):
        if _TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.warning(
            "%s: removed %d temporary file(s) left by an interrupted write: %s",
            directory,
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed
