"""Checksum-verified downloads of the official dataset files.

Each file is streamed (with a progress bar) into a temporary file next to its destination, hashed
on the way, and renamed into place only when its MD5 (and SHA-256, where one is given) matches the
published value; an interrupted, truncated or corrupt transfer never leaves a file that looks
valid. ``mirror`` replaces the official base URL: a file is fetched from ``<mirror>/<file name>``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlplab._progress import progress_bar
from mlplab._validation import setting
from mlplab.data.base import (
    DatasetError,
    check_data_dir,
    data_root,
    unreadable_data_file,
    user_path,
)
from mlplab.io import atomic_path, remove_partial_writes

# how long a download's or an extraction's temporary file or folder must have been left alone
# before a later command takes it for a killed process's and removes it
STALE_SECONDS = 600.0


def _mirror() -> str:
    return setting("--mirror BASE_URL", "mirror=BASE_URL")


def _data_dir() -> str:
    return setting("--data-dir", "data_dir")


@dataclass(frozen=True)
class RemoteFile:
    """One published file and its published checksum(s)."""

    name: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    base_url: str
    files: tuple[RemoteFile, ...]
    subdir: str  # folder under the data root that downloads go to
    #: another dataset publishes files of the same names (MNIST and Fashion-MNIST): downloads
    #: into a given data_dir go to data_dir/<subdir>, so that one does not overwrite the other
    shared_names: bool = False


SOURCES: dict[str, Source] = {
    # https://www.cs.toronto.edu/~kriz/cifar.html publishes the MD5 of the python archive
    "cifar10": Source("https://www.cs.toronto.edu/~kriz/",
                      (RemoteFile("cifar-10-python.tar.gz",
                                  md5="c58f30108f718f92721af3b95e74349a"),),
                      "cifar10"),
    # MD5s from https://github.com/zalandoresearch/fashion-mnist (README, "Get the Data")
    "fashion-mnist": Source(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (RemoteFile("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
         RemoteFile("train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe"),
         RemoteFile("t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79"),
         RemoteFile("t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310")),
        "fashion-mnist", shared_names=True),
    # yann.lecun.com/exdb/mnist refuses scripted downloads; PyTorch's copy serves the same files
    # (same MD5s as torchvision's MNIST)
    "mnist": Source(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        (RemoteFile("train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
         RemoteFile("train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432"),
         RemoteFile("t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3"),
         RemoteFile("t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c")),
        "mnist", shared_names=True),
}

CHUNK = 1 << 16


def file_digests(path: str | os.PathLike) -> tuple[str, str]:
    """``(md5, sha256)`` hex digests of a file."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _matches(md5: str, sha: str, remote: RemoteFile) -> str | None:
    """``None`` if the digests match ``remote``'s, else a description of the mismatch."""
    if remote.md5 and md5 != remote.md5.lower():
        return f"MD5 is {md5}, expected {remote.md5}"
    if remote.sha256 and sha != remote.sha256.lower():
        return f"SHA-256 is {sha}, expected {remote.sha256}"
    return None


def checksum_problem(name: str, path: str | os.PathLike) -> str | None:
    """Why ``path`` fails the published checksum of the file of that name in dataset ``name``,
    or ``None`` if it matches or none is published for that name (an uncompressed IDX file)."""
    path = Path(path)
    remote = next((f for f in SOURCES[name.lower()].files if f.name == path.name), None)
    if remote is None:
        return None
    try:
        return _matches(*file_digests(path), remote)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"


def download_file(url: str, dest: str | os.PathLike, md5: str | None = None,
                  sha256: str | None = None, timeout: float = 60.0, progress: bool = True,
                  *, mirrored: bool = False) -> Path:
    """Stream ``url`` to ``dest``, verifying the checksum(s) before the file appears there.
    ``mirrored``: ``url`` is on a mirror the user gave, which a failure then names (rather than
    suggesting one)."""
    dest = Path(dest)
    _refuse_a_folder(dest)
    remote = RemoteFile(dest.name, md5, sha256)
    if dest.parent.is_dir():
        # a download killed outright (SIGKILL, a closed terminal) left its hidden temporary
        # file, up to 170 MB, that nothing removed; one idle for this long is no live download's,
        # which writes at least once per ``timeout`` or fails
        remove_partial_writes(dest.parent, [dest.name], older_than=max(STALE_SECONDS, 2 * timeout))
    # the way out of a failed download: a mirror, or, where one was given, checking it
    mirror = f"the mirror ({_mirror()} fetches BASE_URL/<file name>)"
    try:
        # an opener of this download's own: urlopen's is built once per process, with the proxy
        # settings of its first call, so that a proxy set (or unset) later was not used, and a
        # failure would name one that the request did not go through
        redirects = _Redirects()
        response = urllib.request.build_opener(redirects).open(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        reason = " ".join(str(exc.reason).split())  # a redirect loop's reason spans lines
        fix = f"check {mirror}" if mirrored else f"check the URL or pass {_mirror()}"
        raise DatasetError(f"download of {redirects.said(url)}"
                           f"{_through_proxy(redirects.last or url)} failed: HTTP {exc.code} "
                           f"{reason}; {fix}.") from None
    # (http.client's InvalidURL, from a mirror with a space or a port that is no number, is
    # neither: it ended the command as an "internal error ... please report it")
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = " ".join(str(getattr(exc, "reason", exc)).split())
        proxy = _proxy(redirects.last or url)
        via = _through_proxy(redirects.last or url)
        # a dead proxy's "Connection refused" was put down to the network and the mirror
        network = f"the proxy (or unset {proxy[0]}), the network" if proxy else "the network"
        fix = f"check {network} and {mirror}" if mirrored else \
            f"check {network}, pass {_mirror()}"
        raise DatasetError(f"cannot download {redirects.said(url)}{via} ({reason}); {fix}, or "
                           f"copy the file to "
                           f"{dest} yourself.") from None
    # the folders saving makes: a failed (or interrupted) download removes them again, so that
    # it leaves the data folder as it was rather than an empty <data-dir>/fashion-mnist/
    made = _missing_folders(dest.parent)
    try:
        with response:
            try:
                # what to do about a file that is not the published one
                fix = f"check {mirror}" if mirrored else \
                    f"run the command again, or pass {_mirror()}"
                return _save(response, redirects.said(url), dest, remote, progress, fix)
            except OSError as exc:  # the destination: a folder that cannot be made or written to
                from mlplab.io import DiskFullError

                if isinstance(exc, DiskFullError):  # its message says what to do: free space
                    raise
                raise DatasetError(f"cannot save the download to {dest} "
                                   f"({exc.strerror or exc}); choose another "
                                   f"{_data_dir()}.") from None
    except BaseException:
        _remove_empty(made)
        raise


def _refuse_a_folder(dest: Path) -> None:
    """Refuse ``dest`` if it is a folder, before any network: offline, the failure's advice to
    copy the file to ``dest`` yourself named a path that cannot take it, and online the whole
    file was fetched for nothing."""
    if dest.is_dir():
        raise DatasetError(f"{dest} is a folder, where the download's file should go; "
                           f"move it away or choose another {_data_dir()}.")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, remembering where it last sent the request: a failure there
    (a dead host, an HTTP error, a login page instead of the file) named only the URL asked
    for, which answers with nothing but the redirect."""

    def __init__(self) -> None:
        self.last: str | None = None

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            self.last = new.full_url
        return new

    def said(self, url: str) -> str:
        """``url`` as a message names it: with where it was redirected to, if it was."""
        return url if self.last in (None, url) else f"{url} (redirected to {self.last})"


def _proxy(url: str) -> tuple[str, str] | None:
    """``(variable, proxy)``: the proxy from the environment (``http_proxy``, ``HTTPS_PROXY``,
    ...) that urllib sends the request for ``url`` through, without the credentials it may hold,
    and the variable that sets it; None where there is none or ``no_proxy`` bypasses it."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    # urllib takes the lower-case variable over the upper-case one
    var = next((v for v in (f"{parts.scheme}_proxy", f"{parts.scheme.upper()}_PROXY")
                if os.environ.get(v) == proxy), f"{parts.scheme}_proxy")
    scheme, sep, rest = proxy.rpartition("://")
    return var, f"{scheme}{sep}{rest.split('/')[0].rpartition('@')[2]}"


def _through_proxy(url: str) -> str:
    """" through the proxy P (from $VAR)" where :func:`_proxy` finds one, else ""."""
    found = _proxy(url)
    return f" through the proxy {found[1]} (from ${found[0]})" if found else ""


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those above it that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(folder) and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: only what this download made,
    never a file in them (another download's, one the user put there meanwhile)."""
    for folder in folders:
        try:
            folder.rmdir()  # refuses a folder that is not empty
        except OSError:
            return  # not empty (or not removable): nor is any folder above it


def _save(response: http.client.HTTPResponse | urllib.response.addinfourl, url: str,
          dest: Path, remote: RemoteFile, progress: bool, fix: str) -> Path:
    """Stream ``response`` into ``dest`` through a temporary file, renamed into place only if
    the transfer is complete and its checksums match ``remote``'s (``fix``: what a mismatch's
    message says to do)."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    h_md5, h_sha = hashlib.md5(), hashlib.sha256()
    got, head = 0, b""
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            with open(tmp, "wb") as f, progress_bar(progress, total=total, unit="B",
                                                    unit_scale=True, desc=dest.name,
                                                    leave=False) as bar:
                # read1: what has arrived, up to CHUNK; read(CHUNK) waits for all of it, and a
                # transfer cut in the middle of a chunk was reported as "after 0 bytes"
                read = getattr(response, "read1", response.read)
                while True:
                    block = read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    if len(head) < _HEAD:  # what the file starts with: an HTML page?
                        head += block[:_HEAD - len(head)]
                    h_md5.update(block)
                    h_sha.update(block)
                    got += len(block)
                    bar.update(len(block))
        except (http.client.HTTPException, OSError) as exc:  # OSError: sockets and disk
            from mlplab.io import is_disk_full

            if isinstance(exc, OSError) and is_disk_full(exc):
                # not an interrupted transfer: running again fills the disk again; atomic_path
                # makes it a DiskFullError that names the file and says to free space
                raise
            of = f" of {total}" if total is not None else ""
            raise DatasetError(f"download of {url} was interrupted after {got}{of} bytes "
                               f"({type(exc).__name__}: {exc}); nothing was saved - run the "
                               "command again.") from None
        if total is not None and got != total:
            raise DatasetError(f"download of {url} was interrupted after {got} of {total} bytes; "
                               "nothing was saved - run the command again.")
        problem = _matches(h_md5.hexdigest(), h_sha.hexdigest(), remote)
        if problem:
            # an HTML page served with 200 (a login page of a captive portal or proxy, a
            # mirror's error page): its MD5 alone did not say that no data file came at all.
            # Known by its Content-Type, or by its start where a server names it otherwise (a
            # static mirror types a file by its name: application/gzip for the .gz asked for)
            page = f" (the server sent an HTML page of {got} bytes, not the file)" \
                if response.headers.get_content_type() == "text/html" or html_page(head) \
                else ""
            raise DatasetError(f"checksum mismatch for {url}: {problem}{page}; the download was "
                               f"discarded - {fix}.")
    return dest


#: the bytes of a download kept to tell an HTML page by its start
_HEAD = 512
#: an HTML page's start: a doctype or an <html> tag, after any byte order mark and white space
_HTML = re.compile(rb"(?:\xef\xbb\xbf)?\s*<(?:!doctype\s+html|html[\s>])", re.IGNORECASE)


def html_page(head: bytes | bytearray) -> bool:
    """Whether bytes that begin with ``head`` are an HTML page (a server's error or login page
    saved where a data file was expected)."""
    return _HTML.match(head[:_HEAD]) is not None


def download_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where ``name``'s downloads go: ``data_dir`` (``data_dir/<name>`` for MNIST and
    Fashion-MNIST, whose files have the same names), else ``<data root>/<name>``."""
    src = SOURCES[name.lower()]
    if data_dir is None:
        return data_root() / src.subdir
    return user_path(data_dir) / src.subdir if src.shared_names else user_path(data_dir)


def other_dataset(name: str, path: str | os.PathLike) -> str | None:
    """The dataset (other than ``name``) whose published file ``path`` is, by its checksum, or
    None: MNIST's files found where Fashion-MNIST's were looked for, or the other way round."""
    path = Path(path)
    if checksum_problem(name, path) is None:  # ours (or one with no published checksum)
        return None
    for other, src in SOURCES.items():
        if other != name.lower() and src.shared_names and any(
                f.name == path.name for f in src.files) and checksum_problem(other, path) is None:
            return other
    return None


def download_dataset(name: str, data_dir: str | os.PathLike | None = None,
                     mirror: str | None = None, progress: bool = True) -> list[Path]:
    """Fetch every file of ``name`` into :func:`download_folder`.

    Files already there with the right checksum are kept; others are downloaded again.
    """
    key = name.lower()
    if key not in SOURCES:
        raise DatasetError(f"{name!r} cannot be downloaded; choose one of {', '.join(SOURCES)}.")
    src = SOURCES[key]
    check_data_dir(data_dir)
    folder = download_folder(key, data_dir)
    base = (mirror or src.base_url).rstrip("/") + "/"
    for remote in src.files:  # all of them before any download (which, offline, fails first)
        _refuse_a_folder(folder / remote.name)
    out = []
    for remote in src.files:
        dest = folder / remote.name
        try:
            kept = dest.is_file() and _matches(*file_digests(dest), remote) is None
        except OSError as exc:  # a file there that cannot be read cannot be checked either
            raise unreadable_data_file(dest, exc) from None
        if kept:
            out.append(dest)
            continue
        out.append(download_file(base + remote.name, dest, remote.md5, remote.sha256,
                                 progress=progress, mirrored=mirror is not None))
    return out
