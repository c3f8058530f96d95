"""Writing files the user asked for: checked before any work, never left half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from kvcalc.errors import KvcalcError


def why_not_a_file(path: Path) -> str:
    """Why ``path`` cannot be read as a file, in a few words: 'no such file' only when nothing is
    there; a folder, FIFO, device or socket is 'not a regular file (a FIFO)'."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as exc:
        return f"not a usable path ({getattr(exc, 'strerror', None) or exc})"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a plain file")
    return f"not a regular file ({kind})"


def check_target(path: Path, force: bool = False, given: str | None = None) -> None:
    """Refuse early: a name ending in a separator, a missing or unwritable folder, anything
    but a regular file in the file's place (a folder, device or FIFO, even with ``force``),
    or an existing file without ``force``. ``given`` is the name as typed."""
    import stat

    typed = given if given is not None else str(path)
    if typed.endswith(("/", os.sep)):
        raise KvcalcError(f"{typed} names a folder; give a file name; nothing written")
    folder = path.parent
    try:
        if not folder.is_dir():
            raise KvcalcError(f"{path}: folder {folder} does not exist; nothing written")
        if not os.access(folder, os.W_OK):
            raise KvcalcError(f"{path}: folder {folder} is not writable; nothing written")
        mode = path.lstat().st_mode if path.exists() or path.is_symlink() else None
    except OSError as exc:
        raise KvcalcError(f"{path}: {exc.strerror or exc}; nothing written") from None
    if mode is None:
        return
    if stat.S_ISDIR(mode):
        raise KvcalcError(f"{path} is a folder; give a file name such as {path / 'out'}")
    if not stat.S_ISREG(mode):
        raise KvcalcError(f"{path} is not a regular file (a link, device or FIFO); nothing written, "
                          "even with --force")
    if not force:
        raise KvcalcError(f"{path} already exists; nothing written (--force overwrites it)")


def write_atomically(path: Path, write: Callable[[str], None], force: bool = True) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then move it into place. Without
    ``force`` the move is a hard link, which fails if a file appeared there meanwhile."""
    tmp = None
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(handle)
        write(tmp)
        try:  # an overwritten file keeps its permissions; a new one gets the usual ones
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()  # mkstemp makes it private; the user's file is not
        os.chmod(tmp, mode)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # never replaces: FileExistsError if the name is taken
    except FileExistsError:
        raise KvcalcError(f"{path} already exists; nothing written (--force overwrites it)") from None
    except OSError as exc:
        raise KvcalcError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_text(path: Path, text: str, force: bool = False, given: str | None = None) -> None:
    path = Path(path)
    check_target(path, force=force, given=given)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    write_atomically(path, write, force=force)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
