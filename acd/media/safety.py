"""Safe file access for untrusted trees and manifests.

Paths are resolved (symlinks and `..` included) and checked against the source root *before* anything is
opened, so a link to /etc/passwd or a manifest row `../../x.jpg` is refused without touching the target.
Opening uses O_NOFOLLOW (a link swapped in after the check fails instead of being followed) and O_NONBLOCK
(a FIFO cannot hang the run), and only regular files are read, never more than the byte cap.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from acd.media.errors import ProbeError
from acd.media.sniff import SNIFF_BYTES


def printable(text: str) -> str:
    """`text` safe to store as UTF-8 (Arrow strings, JSON, logs), deterministically.

    A file name that is not UTF-8 reaches Python as lone surrogates (surrogateescape): those bytes are shown
    backslash-escaped, as Python shows them (b"caf\\xe9.jpg" -> "caf\\xe9.jpg"); any other lone surrogate
    (from JSON's \\udXXX escapes) is shown as its \\uXXXX escape. Valid text is returned unchanged.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def resolve_inside(root: Path, path: str | os.PathLike, base: Path | None = None) -> Path:
    """Resolve `path` (relative to `base`, default `root`) and require it to stay inside `root`."""
    if "\0" in os.fspath(path):
        raise ProbeError("invalid_path", f"{printable(os.fspath(path))!r} contains a NUL byte")
    root_real = Path(os.path.realpath(root))
    p = Path(path)
    if not p.is_absolute():
        p = Path(base or root) / p
    real = Path(os.path.realpath(p))
    if real != root_real and not real.is_relative_to(root_real):
        raise ProbeError("escapes_root", f"{printable(os.fspath(path))} resolves outside the source root")
    if os.path.islink(real):  # realpath resolves every link it can; one still standing is part of a loop
        raise ProbeError("symlink_loop", f"{printable(os.fspath(path))} is a symlink loop")
    return real


def read_regular(real: Path, max_bytes_for) -> tuple[bytes, bytes]:
    """Read a regular file: returns (head, data). `max_bytes_for(head, size)` gives the cap once the
    first bytes are known (the modality decides the cap) and may raise ProbeError itself.
    """
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        why = "symlink swapped in after the check" if exc.errno == errno.ELOOP else os.strerror(exc.errno or 0)
        raise ProbeError("unreadable", f"{why} ({type(exc).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProbeError("unreadable", "not a regular file")
        if st.st_size == 0:
            raise ProbeError("zero_byte", "0 bytes")
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            head = f.read(SNIFF_BYTES)
            if not head:
                raise ProbeError("zero_byte", "0 bytes read")
            cap = int(max_bytes_for(head, st.st_size))
            if st.st_size > cap:
                raise ProbeError("too_large", f"{st.st_size} bytes > cap {cap}")
            rest = f.read(cap + 1 - len(head))  # +1: a file that grew past the cap is caught too
        data = head + rest
        if len(data) > cap:
            raise ProbeError("too_large", f"more than {cap} bytes")
        return head, data
    except OSError as exc:
        raise ProbeError("unreadable", f"{type(exc).__name__}: {exc}") from None
    finally:
        os.close(fd)


def read_head(real: Path, n: int = SNIFF_BYTES) -> bytes:
    """The first `n` bytes of a regular file (same safe open as read_regular); b"" when unreadable/empty."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, n)
    except OSError:
        return b""
    finally:
        os.close(fd)
