"""Telling a folder on a network file system (where SQLite's WAL cannot work) from a local one:
Linux's /proc/mounts, macOS's and the BSDs' statfs(2), Windows' drive type. macOS, the BSDs and
Windows are simulated: the platform name that the module reads is faked, and the call into the C
library or kernel32 is replaced by one that answers as theirs would."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sqlite3
import struct
import sys
import types
from pathlib import Path

import pytest

from mlplab import _filesystem
from mlplab._filesystem import MNT_LOCAL, is_unc, on_network_file_system


def _fake_platform(monkeypatch, name: str) -> None:
    """``sys.platform`` as the module under test reads it (the rest of Python keeps its own)."""
    monkeypatch.setattr(_filesystem, "sys", types.SimpleNamespace(platform=name))


def _fake_proc_mounts(monkeypatch, text: str) -> None:
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text if str(self) ==
                        "/proc/mounts" else real_read(self, *a, **k))


def test_linux_tells_network_file_systems_from_proc_mounts(tmp_path, monkeypatch):
    _fake_platform(monkeypatch, "linux")
    for name in ("shared", "shared/studies", "my nas", "sharedx", "old"):
        (tmp_path / name).mkdir()
    _fake_proc_mounts(monkeypatch, "/dev/sda1 / ext4 rw 0 0\n"
                                   f"server:/export {tmp_path}/shared nfs4 rw 0 0\n"
                                   f"//nas/share {tmp_path}/my\\040nas cifs rw 0 0\n"
                                   f"server:/old {tmp_path}/old nfs3 rw 0 0\n")
    assert on_network_file_system(tmp_path / "shared" / "studies")
    assert on_network_file_system(tmp_path / "my nas")
    assert on_network_file_system(tmp_path / "old")
    assert not on_network_file_system(tmp_path / "sharedx")
    assert not on_network_file_system(tmp_path)


def test_linux_without_proc_mounts_says_not_network(tmp_path, monkeypatch):
    _fake_platform(monkeypatch, "linux")

    def unreadable(self: Path, *args: object, **kwargs: object) -> str:
        raise FileNotFoundError(2, "No such file or directory", str(self))

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert not on_network_file_system(tmp_path)


class _FakeLibc:
    """A C library whose ``statfs`` fills a struct with ``flags`` at ``offset`` (as ``fmt``);
    ``missing``: the symbols it lacks (ctypes raises AttributeError for them)."""

    def __init__(self, flags: int, offset: int, fmt: str, missing: tuple[str, ...] = (),
                 errno: int = 0) -> None:
        self.flags, self.offset, self.fmt, self.missing, self.errno = \
            flags, offset, fmt, missing, errno
        self.calls: list[tuple[str, bytes]] = []

    def __getattr__(self, name: str):
        if name in self.missing:
            raise AttributeError(f"undefined symbol: {name}")

        def statfs(path: ctypes.c_char_p, buffer: ctypes.Array) -> int:
            self.calls.append((name, path.value))
            if self.errno:
                ctypes.set_errno(self.errno)
                return -1
            struct.pack_into("=" + self.fmt, buffer, self.offset, self.flags)
            return 0

        return statfs


@pytest.mark.parametrize(("platform_name", "symbol", "offset", "fmt", "missing"), [
    ("darwin", "statfs$INODE64", 64, "I", ()),  # an Intel Mac: the 64-bit-inode layout's name
    ("darwin", "statfs", 64, "I", ("statfs$INODE64",)),  # Apple silicon: only that layout
    ("freebsd14", "statfs", 8, "Q", ()),
    ("openbsd7", "statfs", 0, "I", ()),
])
def test_macos_and_the_bsds_ask_statfs_whether_the_file_system_is_local(
        tmp_path, monkeypatch, platform_name, symbol, offset, fmt, missing):
    """Without MNT_LOCAL (NFS, SMB, AFP, WebDAV) a folder is on the network; the flag is read
    from the struct where each system's <sys/mount.h> puts it, with other flags beside it."""
    _fake_platform(monkeypatch, platform_name)
    # (FreeBSD's flags are 64 bits: MNT_SUJ is bit 32)
    libc = _FakeLibc(MNT_LOCAL | 0x1 | (1 << 32 if fmt == "Q" else 0), offset, fmt, missing)
    monkeypatch.setattr(_filesystem, "_libc", lambda: libc)
    assert not on_network_file_system(tmp_path)
    assert libc.calls == [(symbol, os.fsencode(os.path.realpath(tmp_path)))]
    layout = next(v for k, v in _filesystem._STATFS_FLAGS.items() if platform_name.startswith(k))
    assert _filesystem._statfs_flags(str(tmp_path), *layout) == libc.flags
    libc.flags = 0x1 | 0x4000  # (read-only, root file system: still not local)
    assert on_network_file_system(tmp_path)
    # the same flags one field over are not taken for f_flags
    libc.flags, libc.offset = MNT_LOCAL, offset + 4
    assert on_network_file_system(tmp_path)


def test_a_statfs_that_fails_or_is_missing_says_not_network(tmp_path, monkeypatch):
    _fake_platform(monkeypatch, "darwin")
    monkeypatch.setattr(_filesystem, "_libc",
                        lambda: _FakeLibc(0, 64, "I", errno=13))  # (EACCES)
    assert not on_network_file_system(tmp_path)
    monkeypatch.setattr(_filesystem, "_libc",
                        lambda: _FakeLibc(0, 64, "I", missing=("statfs$INODE64", "statfs")))
    assert not on_network_file_system(tmp_path)

    def no_libc() -> None:
        raise OSError("no C library")

    monkeypatch.setattr(_filesystem, "_libc", no_libc)
    assert not on_network_file_system(tmp_path)
    # (the error the caller swallows: statfs's errno)
    monkeypatch.setattr(_filesystem, "_libc", lambda: _FakeLibc(0, 0, "I", errno=13))
    with pytest.raises(PermissionError):
        _filesystem._statfs_flags(str(tmp_path), ("statfs",), 0, "I")


@pytest.mark.skipif(not sys.platform.startswith("linux") or
                    platform.machine() not in ("x86_64", "aarch64"),
                    reason="glibc's struct statfs on 64-bit Linux")
def test_statfs_flags_calls_the_real_c_library(tmp_path):
    """The ctypes call itself, on this machine's C library: Linux's statfs keeps f_flags at byte
    80 (ten 8-byte fields in), always with ST_VALID (0x20), and statvfs reports the same flags
    (glibc without ST_VALID)."""
    flags = _filesystem._statfs_flags(str(tmp_path), ("statfs",), 80, "Q")
    assert flags & 0x20
    assert (flags ^ os.statvfs(tmp_path).f_flag) & ~0x20 == 0
    with pytest.raises(OSError) as caught:
        _filesystem._statfs_flags(str(tmp_path / "missing"), ("statfs",), 80, "Q")
    assert caught.value.errno == 2


def test_netbsd_reads_mnt_local_from_statvfs(tmp_path, monkeypatch):
    _fake_platform(monkeypatch, "netbsd10")
    flags = {"f_flag": MNT_LOCAL}
    monkeypatch.setattr(os, "statvfs", lambda path: types.SimpleNamespace(**flags))
    assert not on_network_file_system(tmp_path)
    flags["f_flag"] = 0x1
    assert on_network_file_system(tmp_path)


class _FakeKernel32:
    """kernel32's volume calls for a machine whose folders lie on the volumes ``roots`` (volume
    root -> drive type)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.asked: list[str] = []

    def GetVolumePathNameW(self, path: ctypes.c_wchar_p, root: ctypes.Array,  # noqa: N802
                           length: int) -> int:
        found = [r for r in self.roots if str(path.value).startswith(r)]
        if not found or len(max(found, key=len)) >= length:
            return 0
        root.value = max(found, key=len)
        return 1

    def GetDriveTypeW(self, root: ctypes.c_wchar_p) -> int:  # noqa: N802
        self.asked.append(str(root.value))
        return self.roots[str(root.value)]


def test_windows_asks_the_drive_type_of_the_folders_volume(tmp_path, monkeypatch):
    """A mapped network drive is DRIVE_REMOTE (4); a local disk DRIVE_FIXED (3), removable 2."""
    _fake_platform(monkeypatch, "win32")
    folder = os.path.realpath(tmp_path)
    kernel32 = _FakeKernel32({"/": 3, folder: 4})  # (a network volume mounted on the folder)
    monkeypatch.setattr(_filesystem, "_kernel32", lambda: kernel32)
    assert on_network_file_system(tmp_path)
    assert kernel32.asked == [folder]
    kernel32.roots[folder] = 2
    assert not on_network_file_system(tmp_path)
    del kernel32.roots[folder]
    assert not on_network_file_system(tmp_path)
    assert kernel32.asked[-1] == "/"
    kernel32.roots = {}  # GetVolumePathNameW fails: not network
    assert not on_network_file_system(tmp_path)


def test_windows_without_kernel32_says_not_network(tmp_path, monkeypatch):
    _fake_platform(monkeypatch, "win32")
    if not hasattr(ctypes, "WinDLL"):  # (off Windows this is the real ctypes, without WinDLL)
        assert not on_network_file_system(tmp_path)

    def no_kernel32() -> None:
        raise OSError("kernel32 not found")

    monkeypatch.setattr(_filesystem, "_kernel32", no_kernel32)
    assert not on_network_file_system(tmp_path)


def test_windows_unc_paths_are_network_shares(monkeypatch):
    _fake_platform(monkeypatch, "win32")
    monkeypatch.setattr(_filesystem, "_kernel32", lambda: _FakeKernel32({}))
    monkeypatch.setattr(os.path, "realpath", lambda path: os.fspath(path))
    assert on_network_file_system(r"\\nas\share\studies")
    assert not on_network_file_system(r"C:\studies")


@pytest.mark.parametrize(("path", "unc"), [
    (r"\\nas\share\studies", True),
    ("//nas/share/studies", True),
    (r"\\?\UNC\nas\share\studies", True),
    (r"\\?\unc\nas\share", True),
    (r"\\wsl.localhost\Ubuntu\home", True),
    (r"\\?\C:\studies", False),
    (r"\\.\C:\studies", False),
    (r"C:\studies", False),
    ("\\", False),
])
def test_which_windows_paths_are_unc(path, unc):
    assert is_unc(path) is unc


@pytest.mark.parametrize("local", [True, False])
def test_a_study_on_a_mac_network_share_keeps_the_rollback_journal(tmp_path, monkeypatch, local):
    """The journal-mode choice of a SQLite study asks macOS (statfs) as it asks Linux."""
    from mlplab.tuning import storage

    db = tmp_path / "study.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("PRAGMA journal_mode=WAL")
    _fake_platform(monkeypatch, "darwin")
    libc = _FakeLibc(MNT_LOCAL if local else 0, 64, "I")
    monkeypatch.setattr(_filesystem, "_libc", lambda: libc)
    storage._choose_sqlite_journal(f"sqlite:///{db}")
    monkeypatch.undo()
    with contextlib.closing(sqlite3.connect(db)) as con:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == ("wal" if local else "delete")
    assert libc.calls
