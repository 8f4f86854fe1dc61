"""Read a history file as numbered text lines, in constant memory, whatever its wrapping.

The file may be gzip-compressed (recognised by its magic bytes, not its name) and encoded as UTF-8 (with
or without BOM) or UTF-16 LE/BE (with BOM, as MT5 exports; without one, the zero bytes give it away).
Undecodable bytes become U+FFFD so a damaged row fails to parse on its own instead of aborting the file.
Progress is the number of bytes read from disk out of the file's size, so it also works for gzip files.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aitrading.common.errors import BadInputError

__all__ = ["Progress", "TextSource", "content_sha256", "detect_separator"]

Progress = Callable[[int, int], None]
"""Called with (bytes read from disk, file size in bytes) as a file is read."""

_GZIP_MAGIC = b"\x1f\x8b"
_READ_SIZE = 1 << 20
_SEPARATORS = ("\t", ";", ",")


class _CountingReader(io.RawIOBase):
    """A raw binary stream over a file that reports how many bytes were read so far."""

    def __init__(self, raw: io.FileIO, size: int, progress: Progress | None) -> None:
        super().__init__()
        self._raw = raw
        self._size = size
        self._progress = progress
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # io's signature is wider
        n = self._raw.readinto(buffer) or 0
        self.consumed += n
        if self._progress is not None and n:
            self._progress(self.consumed, self._size)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_binary(path: Path, progress: Progress | None) -> tuple[io.BufferedReader[Any], bool]:
    """Open `path` for reading, decompressing gzip transparently; return it and whether it was gzip."""
    try:
        size = path.stat().st_size
        raw = io.FileIO(path, "rb")
    except FileNotFoundError:
        raise BadInputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a directory, not a history file") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    counted = io.BufferedReader(_CountingReader(raw, size, progress), buffer_size=_READ_SIZE)
    if counted.peek(2)[:2] == _GZIP_MAGIC:
        unzipped = gzip.GzipFile(fileobj=counted, mode="rb")
        return io.BufferedReader(unzipped, buffer_size=_READ_SIZE), True
    return counted, False


def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # the codec reads the BOM and picks the byte order
    if len(head) >= 4 and head[1] == 0 and head[3] == 0 and head[0] != 0:
        return "utf-16-le"
    if len(head) >= 4 and head[0] == 0 and head[2] == 0 and head[1] != 0:
        return "utf-16-be"
    return "utf-8"


def detect_separator(line: str) -> str:
    """Return the field separator of a line: tab, then semicolon, then comma (whichever occurs first)."""
    for sep in _SEPARATORS:
        if sep in line:
            return sep
    return ","


class TextSource:
    """The lines of one history file with their 1-based line numbers, read lazily."""

    def __init__(self, path: Path | str, progress: Progress | None = None) -> None:
        self.path = Path(path)
        self._progress = progress
        self.encoding = ""
        self.compressed = False

    def lines(self) -> Iterator[tuple[int, str]]:
        """Yield `(line number, line without its line break)` for every line, blank ones included."""
        binary, self.compressed = _open_binary(self.path, self._progress)
        try:
            try:
                head = binary.peek(4)[:4]
            except (OSError, EOFError) as exc:
                raise BadInputError(f"{self.path} is not a readable gzip file: {exc}") from None
            self.encoding = _detect_encoding(head)
            text = io.TextIOWrapper(binary, encoding=self.encoding, errors="replace", newline=None)
            try:
                for number, line in enumerate(text, start=1):
                    yield number, line.rstrip("\n")
            except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
                raise BadInputError(f"{self.path} is damaged: {exc}") from None
        finally:
            binary.close()


def content_sha256(path: Path | str) -> str:
    """Return the SHA-256 of the file's content (decompressed if gzip): the same data, the same digest."""
    digest = hashlib.sha256()
    binary, _ = _open_binary(Path(path), None)
    try:
        while block := binary.read(_READ_SIZE):
            digest.update(block)
    except (OSError, EOFError) as exc:
        raise BadInputError(f"{path} is damaged: {exc}") from None
    finally:
        binary.close()
    return digest.hexdigest()
