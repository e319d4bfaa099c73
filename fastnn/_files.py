"""Files written so that a crash never leaves half of one: the path checks and the atomic write
that saved models, checkpoints and plots share."""
import os
import secrets
import stat


def as_path(path, name="path"):
    """`path` (str or os.PathLike, bytes decoded) as a str; TypeError naming `name` else."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def atomic_write_bytes(path, data):
    """Write `data` to `path` so that readers see either the old file or the complete new one.

    The bytes go to a fresh temp file in the same directory (os.replace is only atomic within
    one file system), are fsync'ed, then renamed over `path`. On any error, including
    KeyboardInterrupt, the temp file is removed and an existing `path` is left untouched.
    A symlink is written through (its target is replaced, the link stays), and an existing
    file keeps its permission bits (a new one gets the umask's, as open() would give)."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:  # no such file yet (or unreadable metadata: the umask decides)
        mode = None
    directory, base = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        # (name capped so that a long target name cannot make it exceed NAME_MAX)
        tmp = os.path.join(directory, f".{base[:200]}.{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL: never clobber a file someone else created; mode 0o666 lets the umask
            # decide the final permissions like a plain open() would (mkstemp forces 0o600)
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory):
    """Persist the rename itself (POSIX); best effort, not possible on every platform."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
