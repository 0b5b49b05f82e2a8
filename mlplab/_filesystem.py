"""Whether a folder lies on a network file system, as the operating system says: Linux's
/proc/mounts, the BSDs' and macOS's ``statfs(2)`` (its ``MNT_LOCAL`` flag), Windows' drive type.

SQLite's WAL needs this (:mod:`mlplab.tuning.storage`): its readers and writers share an index in
memory, which only the processes of one machine can share.
"""

from __future__ import annotations

import functools
import os
import struct
import sys
from pathlib import Path
from typing import Any

#: file systems of other machines, as /proc/mounts names them
NETWORK_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph",
                        "glusterfs", "lustre", "gpfs", "fuse.sshfs", "fuse.glusterfs",
                        "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse", "davfs", "ncpfs")

#: ``f_flags`` bit of a file system "stored locally", the same on macOS and the BSDs
#: (<sys/mount.h>; NetBSD's ``statvfs`` calls it ST_LOCAL)
MNT_LOCAL = 0x1000

#: where ``struct statfs`` keeps ``f_flags``, by ``sys.platform`` prefix: the C functions to try
#: in turn, the byte offset and the ``struct`` format of the field (checked against each system's
#: <sys/mount.h>). macOS: 64-bit inode layout (``__DARWIN_STRUCT_STATFS64``: f_bsize, f_iosize,
#: five u64 counts, f_fsid, f_owner, f_type, then u32 f_flags); on Intel Macs the plain ``statfs``
#: symbol is the old 32-bit-inode layout, and ``statfs$INODE64`` the one matching (what the C
#: compiler calls); Apple silicon has only the new layout, as plain ``statfs``. FreeBSD: u32
#: f_version, u32 f_type, then u64 f_flags (the same before and since FreeBSD 12's 64-bit
#: inodes). OpenBSD: u32 f_flags first.
_STATFS_FLAGS: dict[str, tuple[tuple[str, ...], int, str]] = {
    "darwin": (("statfs$INODE64", "statfs"), 64, "I"),
    "freebsd": (("statfs",), 8, "Q"),
    "openbsd": (("statfs",), 0, "I"),
}

#: bytes handed to ``statfs`` for its struct: more than any of these systems' struct (2168 on
#: macOS, 2344 on FreeBSD, under 600 on OpenBSD), so that no version of it writes past the end
_STATFS_BUFFER = 4096

#: what ``GetDriveTypeW`` answers for a network drive
DRIVE_REMOTE = 4


def on_network_file_system(folder: str | os.PathLike[str]) -> bool:
    r"""Whether ``folder`` (an existing folder) lies on a network file system, as far as this
    system says: Linux's /proc/mounts (NFS, SMB/CIFS, sshfs, ...); on macOS and the BSDs, a file
    system without the ``MNT_LOCAL`` flag (NFS, SMB, AFP, WebDAV); on Windows, a UNC path
    (``\\server\share``) or a drive that Windows calls remote (a mapped network drive).

    False where the system cannot be asked (no /proc/mounts, no ``ctypes``, a call that
    fails)."""
    try:
        target = os.path.realpath(folder)
        if sys.platform == "win32":
            return is_unc(target) or _windows_drive_type(target) == DRIVE_REMOTE
        if sys.platform.startswith("netbsd"):
            # NetBSD has no statfs; its statvfs keeps every mount flag in f_flag
            return not os.statvfs(target).f_flag & MNT_LOCAL
        for prefix, layout in _STATFS_FLAGS.items():
            if sys.platform.startswith(prefix):
                return not _statfs_flags(target, *layout) & MNT_LOCAL
        fstype = _proc_mounts_type(target)
        # (every NFS version's name starts with nfs: older kernels also said nfs3)
        return fstype in NETWORK_FILE_SYSTEMS or fstype.startswith("nfs")
    except Exception:  # noqa: BLE001 - a system that cannot be asked: ctypes missing, no symbol
        # "not network", as before macOS and Windows were asked: a SQLite study then goes in WAL,
        # right for a local folder (a progress poll that never waits for a write); on a share it
        # goes wrong only for processes of several machines, which docs/tuning.md advises
        # against for SQLite anyway
        return False


def _proc_mounts_type(target: str) -> str:
    """The file system type of the mount that holds ``target`` (a real path) in /proc/mounts,
    "" where there is none (an OSError where the file cannot be read)."""
    mounts = Path("/proc/mounts").read_text().splitlines()
    best, fstype = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and the like in octal (\040)
        point = fields[1].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def is_unc(path: str) -> bool:
    r"""Whether the Windows path ``path`` names a network share: ``\\server\share\...`` or its
    long form ``\\?\UNC\server\share\...``, but not the local ``\\?\C:\...`` or ``\\.\``
    device paths."""
    path = path.replace("/", "\\")
    if path[:8].upper() == "\\\\?\\UNC\\":
        return True
    return path.startswith("\\\\") and path[2:3] not in ("?", ".", "")


@functools.cache
def _libc() -> Any:
    """The C library of this process (``ctypes.CDLL``), which errno is kept for."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _statfs_flags(target: str, names: tuple[str, ...], offset: int, fmt: str) -> int:
    """``f_flags`` of ``statfs(target)``: the first of the C functions ``names`` that the C
    library has, its field read as ``fmt`` at byte ``offset``."""
    import ctypes

    libc = _libc()
    for name in names:
        try:
            function = getattr(libc, name)
            break
        except AttributeError:  # (ctypes' answer for a symbol the library lacks)
            continue
    else:
        raise OSError(f"the C library has none of {', '.join(names)}")
    buffer = ctypes.create_string_buffer(_STATFS_BUFFER)
    if function(ctypes.c_char_p(os.fsencode(target)), buffer) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), target)
    return int(struct.unpack_from("=" + fmt, buffer, offset)[0])


def _kernel32() -> Any:
    """Windows' kernel32, with its last error kept."""
    import ctypes

    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]


def _windows_drive_type(target: str) -> int:
    """``GetDriveTypeW`` of the volume that holds ``target``: the root that
    ``GetVolumePathNameW`` names (``C:\\``, ``Z:\\``, a folder a volume is mounted on)."""
    import ctypes

    kernel32 = _kernel32()
    # (the root is never longer than the path and its closing backslash)
    root = ctypes.create_unicode_buffer(len(target) + 2)
    if not kernel32.GetVolumePathNameW(ctypes.c_wchar_p(target), root, len(root)):
        raise OSError(f"GetVolumePathNameW failed for {target}")
    return int(kernel32.GetDriveTypeW(ctypes.c_wchar_p(root.value)))
