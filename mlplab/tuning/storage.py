"""Where a study lives: :class:`StorageSpec` (picklable, so that every worker process opens the
same storage), :func:`storage_spec` (``--storage`` to a spec), SQLAlchemy URLs and SQLite locking,
and crash detection: Optuna's heartbeats for SQLAlchemy storages, and the same mechanism added to
journal files by a heartbeat journal storage. Each storage kind's details stay here, out of the
study and the search.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplab._filesystem import on_network_file_system
from mlplab._validation import setting
from mlplab.tuning.quiet import quiet_optuna_warnings

if TYPE_CHECKING:
    import datetime
    import threading
    from collections.abc import Callable, Iterator, Mapping

    import optuna
    from optuna.storages.journal import BaseJournalBackend
    from optuna.trial import FrozenTrial

    #: what Optuna calls with a trial whose worker died (its heartbeat stopped)
    StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]

#: trial system attribute holding the last heartbeat (Unix time) of a journal-storage trial
HEARTBEAT_ATTR = "mlplab:heartbeat"
#: trial user attribute naming the worker process that runs the trial
WORKER_ATTR = "worker"
#: trial user attribute: the grace period (seconds) of the process that runs the trial, by which
#: every process judges it. Optuna's check judged all running trials by the checking process's
#: own: one started with a shorter ``--grace`` than the others failed their live trials as dead
GRACE_ATTR = "mlplab:grace"
_WINDOWS = os.name == "nt"


@dataclass(frozen=True)
class StorageSpec:
    """How to open a study's storage in any process (picklable): ``url`` is a SQLAlchemy URL or
    ``journal:PATH``; ``heartbeat``/``grace`` in seconds (``heartbeat=None`` disables)."""

    url: str
    heartbeat: int | None = 30
    grace: int | None = None
    retry_failed: bool = True

    @property
    def display(self) -> str:
        """The URL without its password."""
        if self.url.startswith("journal:"):
            return self.url
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - only for display
            return self.url

    @property
    def grace_period(self) -> int | None:
        """Seconds without a heartbeat before a running trial is stale (None without
        heartbeats)."""
        return None if self.heartbeat is None else self._grace(self.heartbeat)

    def _grace(self, heartbeat: int) -> int:
        """Seconds without a heartbeat before a running trial is stale: ``grace``, or two
        heartbeats."""
        return self.grace if self.grace is not None else 2 * heartbeat

    def open(self) -> optuna.storages.BaseStorage:
        """An Optuna storage object with heartbeats and the stale-trial callback configured."""
        import optuna

        callback = requeue_callback(announce=True) if self.retry_failed else None
        if self.url.startswith("journal:"):
            path = Path(self.url[len("journal:"):]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            _check_journal_start(path, self.display)
            # Optuna's default lock is a symbolic link, which Windows lets only administrators
            # (or Developer Mode) create: everyone else would get "A required privilege is not
            # held by the client" (optuna/optuna#4298). The open lock (a file made with O_EXCL)
            # uses the same lock file name, so both exclude each other on a shared journal
            backend = journal_file_backend(path, open_lock=_WINDOWS)
            storage_class = _heartbeat_journal_storage_class()
            try:
                with quiet_optuna_warnings():  # "experimental" before Optuna 4.0
                    if self.heartbeat is None or storage_class is None:
                        return optuna.storages.JournalStorage(backend)
                    return storage_class(backend, self.heartbeat, self._grace(self.heartbeat),
                                         callback)
            # (JSON lines of another program's log: a KeyError for 'op_code'; numbers: a
            # TypeError)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                # alone, "Expecting value: line 1 column 1 (char 0)" named no file
                raise _not_a_journal(self.display, str(exc)) from None
        kwargs: dict[str, Any] = {}
        url = sqlalchemy_url(self.url)
        if url.startswith("sqlite"):
            # several processes share one SQLite file: wait for the lock instead of failing;
            # no isolation level: the driver then starts no transaction of its own, and
            # _claim_sqlite_rows starts each one (see there)
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120,
                                                        "isolation_level": None}}
            _make_sqlite_folder(url)
            _choose_sqlite_journal(url)
        else:
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        if self.heartbeat is not None:
            kwargs.update(heartbeat_interval=int(self.heartbeat),
                          grace_period=int(self._grace(self.heartbeat)),
                          **_callback_kwarg(callback))
        from sqlalchemy.exc import SQLAlchemyError

        for attempt in range(4):
            try:
                with quiet_optuna_warnings():
                    storage = optuna.storages.RDBStorage(url, **kwargs)
                if self.heartbeat is not None:
                    _stale_from_its_start(storage)
                if url.startswith("sqlite"):
                    _claim_sqlite_rows(storage)
                return storage
            except ImportError as exc:
                # Optuna's message names no module; the ImportError it wraps does (pymysql,
                # MySQLdb, psycopg2, ...), and mlplab's extra installs PostgreSQL's only
                module = getattr(exc.__cause__, "name", None)
                missing = f"its database driver (module {module}) is not installed" if module \
                    else str(exc)
                how = ("pip install 'mlplab[postgres]'" if url.startswith("postgres") else
                       "install it")
                raise RuntimeError(f"cannot open storage {self.display}: {missing}; "
                                   f"{how}.") from None
            except SQLAlchemyError as exc:
                # workers started together on an empty database race to create Optuna's
                # tables; the loser sees "already exists" and simply opens them next time
                if attempt == 3:
                    # the driver's own first line (e.g. "connection ... refused"), not
                    # SQLAlchemy's wrapping of it with a link to its documentation
                    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                    raise RuntimeError(f"cannot open storage {self.display}: {reason}"
                                       f"{_no_room_advice(reason) or _server_advice(url)}"
                                       ) from exc
                time.sleep(0.2 + 0.3 * attempt)
        raise AssertionError("unreachable")


def _not_a_journal(display: str, why: str) -> RuntimeError:
    return RuntimeError(f"cannot open storage {display}: it is not an Optuna journal file "
                        f"({why}); give another file, or move this one away if it is damaged.")


#: the most of a journal file's first line that :func:`_check_journal_start` reads: Optuna's
#: first operation (it creates a study) is a short line, whatever the study's name
_FIRST_LINE_LIMIT = 1 << 20


def _check_journal_start(path: Path, display: str) -> None:
    """Refuse a journal file whose first line is not one of Optuna's operations.

    Optuna passes over a last line that it cannot read (a write in progress), so a file of one
    such line (a log of another program, a file given by mistake) was opened as an empty journal
    and a study appended to it: the user's file was changed, and the error came later from
    ``create_study``, naming no file. A first line still being written (no line end yet) is
    let through if it begins as Optuna's lines do."""
    _check_storage_file(path)  # (reading a named pipe would wait for a writer)
    try:
        with open(path, "rb") as fh:
            line = fh.readline(_FIRST_LINE_LIMIT)
    except OSError:  # (a new journal; one that cannot be read: Optuna says why)
        return
    if not line:  # (an empty file: Optuna starts it)
        return
    if not line.endswith(b"\n") and len(line) < _FIRST_LINE_LIMIT:
        if line.lstrip().startswith(b"{"):
            return
        raise _not_a_journal(display, "its first line is not a JSON object")
    try:
        first = json.loads(line)
    except ValueError as exc:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
        raise _not_a_journal(display, f"its first line is not JSON: {exc}") from None
    if not isinstance(first, dict) or "op_code" not in first:
        raise _not_a_journal(display, "its first line is not an Optuna operation")


def grace_of(storage: Any) -> int | None:
    """The grace period of ``storage``'s heartbeats (None without heartbeats)."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval is None:
        return None
    grace = getattr(storage, "grace_period", None)
    if grace is None:  # Optuna wraps an RDBStorage in a cache that keeps it as its _backend
        grace = getattr(getattr(storage, "_backend", None), "grace_period", None)
    return int(grace) if grace is not None else 2 * int(interval)


def trial_grace(user_attrs: Mapping[str, Any], default: float) -> float:
    """The grace period a running trial is judged by: its worker's (:data:`GRACE_ATTR`), else
    ``default``, the checking process's (a trial not yet named, or named by an older mlplab)."""
    value = user_attrs.get(GRACE_ATTR)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def name_trial(trial: optuna.Trial, worker: str) -> None:
    """Record in ``trial`` its worker's grace period (:data:`GRACE_ATTR`), PID namespace and
    name (the name last, so that a named trial has the others)."""
    from mlplab.tuning.processes import NAMESPACE_ATTR, pid_namespace

    grace = grace_of(trial.study._storage)
    if grace is not None:
        trial.set_user_attr(GRACE_ATTR, grace)
    namespace = pid_namespace()
    if namespace is not None:  # (whether its pid can be looked up on this machine)
        trial.set_user_attr(NAMESPACE_ATTR, namespace)
    trial.set_user_attr(WORKER_ATTR, worker)


def _stale_from_its_start(storage: Any) -> None:
    """Make ``storage`` (an RDBStorage with heartbeats) count a running trial's start as its
    first heartbeat: one that never recorded a heartbeat and names no worker is stale once the
    grace period has passed since it began, as the journal storage's trials are.

    Only a trial that names no worker: one that does and has no heartbeat is a trial of a
    process without heartbeats (``--heartbeat 0``, each invocation's own), live or not, as a
    worker with heartbeats records one before it names its trial
    (:class:`mlplab.tuning.search._WithinTarget`); counting its start failed every such trial
    that ran longer than the grace period.

    Optuna's check skips a trial without a heartbeat, and Optuna creates a trial (and its
    sampler draws the trial's relative settings) before the trial's heartbeat thread starts and
    before the worker names it (the trial's ``worker``): a process killed in that instant left a
    trial RUNNING for ever, counted towards the target, so every later search of the study ended
    a trial short, with no word."""
    import datetime

    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    heartbeat_stale = storage._get_stale_trial_ids
    grace = storage.grace_period if storage.grace_period is not None else \
        2 * storage.heartbeat_interval
    trial = models.TrialModel

    @functools.wraps(heartbeat_stale)
    def stale(study_id: int) -> list[int]:
        # Optuna's query, with each trial judged by its own worker's grace period (trial_grace)
        now = time.time()
        found = []
        with _create_scoped_session(storage.scoped_session) as session:
            # the database's clock, which stamped the heartbeats (as Optuna's check reads it)
            db_now = session.execute(sqlalchemy.func.now()).scalar()
            assert db_now is not None
            db_now = db_now.replace(tzinfo=None)
            for t in session.query(trial).options(
                    sqlalchemy.orm.selectinload(trial.heartbeats),
                    sqlalchemy.orm.selectinload(trial.user_attributes)).filter(
                    trial.study_id == study_id, trial.state == TrialState.RUNNING).all():
                attrs = {a.key: json.loads(a.value_json) for a in t.user_attributes}
                if t.heartbeats:
                    limit = datetime.timedelta(seconds=trial_grace(attrs, grace))
                    if db_now - t.heartbeats[0].heartbeat > limit:
                        found.append(t.trial_id)
                elif WORKER_ATTR not in attrs and \
                        (start := _started(t, now, grace)) is not None and now - start > grace:
                    found.append(t.trial_id)
        return found

    storage._get_stale_trial_ids = stale


def _claim_sqlite_rows(storage: Any) -> None:
    """Start every transaction of ``storage`` (an RDBStorage on a SQLite file) that may write
    with ``BEGIN IMMEDIATE``, which takes the file's write lock at once; one that only reads
    with a plain ``BEGIN``, which takes none.

    Optuna changes a trial's state by reading the row, checking it and writing it in one
    transaction (``SELECT ... FOR UPDATE`` elsewhere): a WAITING trial becomes RUNNING for one
    worker only, a RUNNING one FAIL once. SQLite has no row locks, and Python's driver began the
    transaction only at the write, after the read: two workers could both read a re-queued trial
    as WAITING and both run it, or both fail a dead worker's trial and re-queue it twice. Such a
    transaction now holds the lock from its read to its commit; other writers wait their turn
    (the busy timeout). The storage's reads (its ``get_*`` methods, the stale-trial query) write
    nothing, so they need no lock: taking it made every read (the parent's progress, each
    sampler's look at the trials, each worker's check of the target) queue behind the writers
    and each other, and a heartbeat queued behind them arrived late enough for a live trial to
    be failed as stale. A transaction that only reads cannot deadlock with a writer."""
    import threading

    from sqlalchemy import event

    reading = threading.local()  # (the heartbeat thread's writes are its own)

    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if getattr(reading, "depth", 0) else
                                   "BEGIN IMMEDIATE")

    event.listen(storage.engine, "begin", begin)
    for name in dir(storage):
        method = getattr(storage, name)
        if (name.startswith("get_") or name == "_get_stale_trial_ids") and callable(method):
            setattr(storage, name, _only_reading(method, reading))


def _only_reading(method: Callable[..., Any], reading: threading.local) -> Callable[..., Any]:
    """``method`` marking the transactions it begins in this thread as reads."""

    @functools.wraps(method)
    def read(*args: Any, **kwargs: Any) -> Any:
        reading.depth = getattr(reading, "depth", 0) + 1
        try:
            return method(*args, **kwargs)
        finally:
            reading.depth -= 1

    return read


def _make_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file, as a journal file's is: SQLite creates only the file,
    and said just "unable to open database file" for ``--storage studies/cifar.db``."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # (a file in the way, no permission): say which folder
            why = "a file of that name is in the way" if folder.is_file() else \
                exc.strerror or str(exc)
            raise RuntimeError(f"cannot create the folder {folder} of the SQLite storage: "
                               f"{why}.") from None
        # a study is written to as it is searched (and SQLite puts its -wal and -shm files
        # beside it): read-only, Optuna's first commit failed with "An exception is raised
        # during the commit ... e.g. exceeding max length", naming neither file nor cause
        path = Path(database).expanduser()
        for where, what in ((path, "the file"), (folder, "its folder")):
            if where.exists() and not os.access(where, os.W_OK):
                raise RuntimeError(f"cannot write the SQLite storage {path}: {what} is "
                                   f"read-only; make it writable, or copy the study elsewhere "
                                   f"and give {setting('--storage', 'storage')} the copy.")


def _choose_sqlite_journal(url: str) -> None:
    """Put a local SQLite file in WAL mode (``PRAGMA journal_mode=WAL``, a setting the file
    keeps), and one on a network file system back in the default rollback journal.

    In the rollback journal a reader waits while a writer commits, and under the workers'
    stream of writes (every epoch's value, heartbeats) the command's progress poll waited up to
    seconds; in WAL a reader reads the last commit without waiting, and writers still take the
    one write lock in turn (``BEGIN IMMEDIATE``: a re-queued trial is still claimed once). WAL
    keeps ``study.db-wal`` and ``study.db-shm`` beside the file while it is open (SQLite folds
    them back in and removes them as the last connection closes). It cannot work across
    machines, so a file on NFS or SMB keeps the rollback journal. A file that cannot be switched
    (another process holds it, a read-only folder) is left as it is: both modes work."""
    import sqlite3

    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    mode = "DELETE" if on_network_file_system(path.parent) else "WAL"
    with contextlib.suppress(sqlite3.Error, OSError), \
            contextlib.closing(sqlite3.connect(path, timeout=120)) as con:
        current = con.execute("PRAGMA journal_mode").fetchone()[0]
        # a rollback journal other than the default (TRUNCATE, PERSIST) is the user's choice
        if current.upper() in ("DELETE", "WAL") and current.upper() != mode:
            con.execute(f"PRAGMA journal_mode={mode}")


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Close the database connections that ``storage`` (an opened study's ``_storage``) keeps:
    this thread's session (a Ctrl-C may have cut short its closing, which rolls back its
    transaction and returns its connection) and the connections in its pool; it opens new ones
    if used again. Journal files are opened per operation."""
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    remove_session = getattr(backend, "remove_session", None)
    if remove_session is not None:
        remove_session()
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def release_interrupted(exc: BaseException) -> None:
    """Let go of the database statements that the traceback of ``exc`` (a KeyboardInterrupt)
    and the exceptions it chains keep alive, so that the study's SQLite file is not left locked.

    SQLAlchemy takes a KeyboardInterrupt inside a statement (a Ctrl-C lands right after the
    driver's call returns) for the end of the program: it closes the connection without closing
    the statement's cursor, which only the frames of the traceback still hold. Since Python 3.11
    ``sqlite3`` no longer finalizes a connection's statements when it closes, and SQLite keeps
    such a connection open, with its lock on the file, until that statement is finalized (its
    cursor freed). So whatever wrote to the same file while the traceback lived waited SQLite's
    busy timeout (120 s) at every write and then failed with "database is locked": the failing
    of the interrupted trial right after the Ctrl-C, and, since a notebook keeps the last
    traceback (``sys.last_traceback``, for ``%debug``), the next search of the same study, which
    looked hung. Clearing the frames drops their local variables only: the traceback prints the
    same."""
    import traceback

    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)  # (frames still running are skipped)
        pending += [e.__cause__, e.__context__]


@contextlib.contextmanager
def released_on_ctrl_c() -> Iterator[None]:
    """A KeyboardInterrupt raised within the block goes on without the database statements its
    traceback holds (:func:`release_interrupted`). Also a decorator."""
    try:
        yield
    except KeyboardInterrupt as exc:
        release_interrupted(exc)
        raise


#: SQLite's words for a write the disk refused: full (ENOSPC, a quota), or an I/O error, as
#: SQLite reports a write over this process's file size limit (EFBIG under ulimit -f)
_NO_ROOM = ("database or disk is full", "disk i/o error")


def _no_room_advice(reason: str) -> str:
    """What to do, after ``reason`` (a database driver's error), where it says the disk refused
    a write; else nothing."""
    if not any(words in reason.lower() for words in _NO_ROOM):
        return ""
    return ("; free some disk space (or raise this process's file size limit, ulimit -f) and "
            "run the command again, which goes on from the study's finished trials")


def _server_advice(url: str) -> str:
    """What to do where a database server's storage (PostgreSQL, MySQL) cannot be opened: the
    driver's reason alone ("Connection refused") left the user to guess; else nothing."""
    if url.startswith("sqlite"):
        return ""
    return ("; check that the database server is running and reachable from this machine, and "
            "the URL's host, port, user, password and database, then run the command again")


@contextlib.contextmanager
def storage_failures_said() -> Iterator[None]:
    """A write to the study that the disk refused (full, or over ``ulimit -f``) as SQLite's
    reason and what to do, not as Optuna's "An exception is raised during the commit. This
    typically happens due to invalid data in the commit, e.g. exceeding max length", which sent
    the user looking for bad data. Other storage errors go on as they are. Also a decorator."""
    import optuna

    try:
        yield
    except optuna.exceptions.StorageInternalError as exc:
        cause = getattr(exc.__cause__, "orig", None) or exc.__cause__
        reason = (str(cause).strip().splitlines() or [""])[0] if cause is not None else ""
        advice = _no_room_advice(reason)
        if not advice:
            raise
        raise RuntimeError(f"cannot write the tuning study: {reason}{advice}") from exc


def journal_file_backend(path: str | os.PathLike, open_lock: bool = False) -> BaseJournalBackend:
    """Optuna's journal file at ``path``, locked with a symbolic link (Optuna's default) or, with
    ``open_lock``, with a lock file made with ``O_EXCL``. ``JournalFileBackend`` and its locks are
    in ``optuna.storages.journal`` since Optuna 4.0, which renamed Optuna 3's
    ``JournalFileStorage`` (the same file format and locks)."""
    try:
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    except ImportError:  # Optuna < 4.0
        from optuna.storages import JournalFileOpenLock
        from optuna.storages import JournalFileStorage as JournalFileBackend
    lock = JournalFileOpenLock(os.fspath(path)) if open_lock else None
    return JournalFileBackend(os.fspath(path), lock_obj=lock)


def sqlite_url(path: str | os.PathLike) -> str:
    """The SQLAlchemy URL of the SQLite file ``path`` (made absolute), written as the installed
    SQLAlchemy reads it back: pasted in as it was, ``runs/q?x/study.db`` was the file ``runs/q``
    (the rest a query), and under SQLAlchemy 2.1 ``p%41`` the folder ``pA``. A path that this
    SQLAlchemy cannot write into a URL (a "?" before 2.1 quotes it, a byte that is not text in
    the file system's encoding) is refused by name."""
    import sqlalchemy
    from sqlalchemy.engine import URL, make_url

    database = str(Path(path).expanduser().resolve())
    try:
        database.encode("utf-8")
    except UnicodeEncodeError:
        # a byte Python could not decode (a Latin-1 name, or any non-ASCII one under an ASCII
        # locale) is a lone surrogate, which a URL cannot hold: SQLAlchemy failed with "'utf-8'
        # codec can't encode ...: surrogates not allowed", naming no file
        journal = setting("--storage journal:FILE.log", "storage='journal:FILE.log'")
        raise ValueError(f"the study's SQLite file {database} cannot be named in a database "
                         f"URL: its path holds bytes that are not {sys.getfilesystemencoding()} "
                         f"text; choose a path without them ({setting('--out', 'out')}, or "
                         f"{setting('--storage', 'storage')} FILE.db) or keep the study in an "
                         f"Optuna journal file ({journal}).") from None
    url = URL.create("sqlite", database=database).render_as_string(hide_password=False)
    if make_url(url).database != database:
        raise ValueError(f"the study's SQLite file {database} cannot be named in a database URL "
                         f"by this SQLAlchemy ({sqlalchemy.__version__}): its path holds a "
                         "character it reads as URL syntax (such as '?'); choose a folder "
                         f"without it ({setting('--out', 'out')}, or "
                         f"{setting('--storage', 'storage')} FILE.db), or install SQLAlchemy "
                         "2.1 or later.")
    return url


def sqlalchemy_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed: SQLAlchemy 2.1 made ``psycopg`` (3)
    the default for ``postgresql://``, while ``mlplab[postgres]`` installs ``psycopg2``."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and \
                importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def check_heartbeat(heartbeat: int | None, grace: int | None) -> int | None:
    """The heartbeat interval that ``heartbeat`` means (``None`` for off: 0 or less), or a
    ``ValueError`` for a ``grace`` that cannot work with it. Also run by ``mlplab tune`` before
    any work, so that the command line reports it as the usage error it is (exit 2)."""
    given = heartbeat  # (0 or None, as the user wrote it: the message names that)
    if heartbeat is not None and heartbeat <= 0:
        heartbeat = None
    if heartbeat is None and grace is not None:
        # the grace period is how long a heartbeat may be missed: without heartbeats nothing
        # would use it, and a user counting on crash detection would silently get none
        raise ValueError(f"{setting('--grace', 'grace')} needs heartbeats, which "
                         f"{setting(f'--heartbeat {given}', f'heartbeat={given!r}')} turns "
                         f"off; give {setting('--heartbeat S', 'heartbeat=S')} with S below the "
                         f"grace period, or leave out {setting('--grace', 'grace')}.")
    if heartbeat is not None and grace is not None and grace <= heartbeat:
        raise ValueError(f"the grace period ({grace} s) must be longer than the heartbeat "
                         f"interval ({heartbeat} s), or every running trial looks dead.")
    return heartbeat


def storage_spec(storage: str | os.PathLike | None, out: Path, heartbeat: int | None = 30,
                 grace: int | None = None) -> StorageSpec:
    """Turn ``--storage`` into a :class:`StorageSpec`.

    ``None``: ``<out>/study.db`` (SQLite); ``journal:PATH`` or a path ending in ``.log`` /
    ``.journal``: an Optuna journal file; a path ending in ``.db``/``.sqlite``/``.sqlite3``: that
    SQLite file; anything with ``://``: a SQLAlchemy URL as given.
    """
    heartbeat = check_heartbeat(heartbeat, grace)
    if storage is None:
        _check_storage_file(out / "study.db", default=True)
        return StorageSpec(sqlite_url(out / "study.db"), heartbeat, grace)
    text = os.fspath(storage)
    if text.startswith("journal:"):
        path = text[len("journal:"):]
        if not path:
            raise ValueError(f"{setting('--storage journal:PATH', 'storage=journal:PATH')} "
                             "needs a file path after 'journal:'.")
        _check_storage_file(Path(path).expanduser())
        return StorageSpec(f"journal:{Path(path).expanduser().resolve()}", heartbeat, grace)
    if "://" in text:
        database = _sqlite_database(text)
        if database is not None:
            _check_storage_file(Path(database).expanduser())
            text = _absolute_sqlite(text, database)
        return StorageSpec(text, heartbeat, grace)
    suffix = Path(text).suffix.lower()
    if suffix in (".log", ".journal"):
        _check_storage_file(Path(text).expanduser())
        return StorageSpec(f"journal:{Path(text).expanduser().resolve()}", heartbeat, grace)
    if suffix in (".db", ".sqlite", ".sqlite3"):
        _check_storage_file(Path(text).expanduser())
        return StorageSpec(sqlite_url(text), heartbeat, grace)
    raise ValueError(f"unrecognised storage {text!r}: give a SQLAlchemy URL (sqlite:///study.db, "
                     "postgresql://user@host/db), journal:PATH, or a file ending in .db or .log.")


def storage_file(spec: StorageSpec) -> Path | None:
    """The file that holds the study of ``spec`` (a SQLite database or a journal), None for a
    database server's or a ``file:`` URI's."""
    if spec.url.startswith("journal:"):
        return Path(spec.url[len("journal:"):])
    database = _sqlite_database(spec.url)
    return None if database is None else Path(database).expanduser()


def _absolute_sqlite(url: str, database: str) -> str:
    """The SQLite ``url`` of the file ``database`` with its path made absolute, as a ``.db``
    path is: the URL is recorded (summary.json, the printed commands), and a relative one named
    another file, or none, from any other folder. Kept as given if this SQLAlchemy cannot write
    the absolute path back into a URL (``sqlite_url`` refuses such a path by name)."""
    from sqlalchemy.engine import make_url

    path = str(Path(database).expanduser().resolve())
    if path == database:
        return url
    absolute = make_url(url).set(database=path).render_as_string(hide_password=False)
    return absolute if make_url(absolute).database == path else url


def _sqlite_database(url: str) -> str | None:
    """The file of a SQLite ``url`` (None for another database, or a ``file:`` URI), refused
    for an in-memory one: the study would end with this process (and each worker process would
    have its own), while every message says to run the command again to go on with it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # (Optuna's own error names it when the storage is opened)
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory" or \
            database.startswith("file::memory:"):
        raise ValueError(f"storage {url!r} is an in-memory SQLite database, which is gone when "
                         "this process ends, but a study must outlive it (to be resumed, shared "
                         "by workers, its results written); give a file: "
                         f"{setting('--storage sqlite:///FILE.db', 'storage=sqlite:///FILE.db')} "
                         "(or FILE.db).")
    return None if database.startswith("file:") else database


def _check_storage_file(path: Path, default: bool = False) -> None:
    """Refuse a storage file ``path`` (with ``default``, the output folder's study.db) that
    exists and is not a regular file: a named pipe hung the command (its opening waits for a
    writer) and a folder gave SQLite's "unable to open database file", naming neither."""
    from mlplab.io import special_file

    what = special_file(path)  # (None for a new file, or one that cannot be looked at)
    if what is None:
        return
    how = f"move it away, or choose another {setting('--out', 'out')}" if default else \
        f"give {setting('--storage', 'storage')} the path of a file (FILE.db or FILE.log)"
    raise ValueError(f"storage {path} is {what}, not a file; {how}.")


def requeue_callback(announce: bool = False) -> StaleTrialCallback:
    """Re-queue a dead worker's (or a Ctrl-C'd) trial once: its parameters run again.
    ``announce``: say so on stderr for a dead worker's trial (not for a Ctrl-C'd one, which the
    command's own interruption line covers)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with quiet_optuna_warnings():
        return _Requeue(cls(max_retry=1), announce)


class _Requeue:
    """Optuna's retry callback, re-queueing the settings without the dead run's user attributes
    and journal heartbeat.

    Optuna copies every user attribute into the retry, and mlplab's are all the dead run's own
    (``worker``, ``epochs``, ...): the retry that a live worker had just taken up, still named
    after the dead process, was failed by the next worker to start as that process's trial
    (:func:`mlplab.tuning.search.fail_dead_local_trials`), and its settings never ran again.
    It copies the system attributes too, the dead run's last journal heartbeat
    (``HEARTBEAT_ATTR``) among them, older than the grace period: the retry was stale from the
    moment a worker took it up until its own first heartbeat, and a process checking then
    failed it for good (a retry is not re-queued again)."""

    def __init__(self, retry: StaleTrialCallback, announce: bool = False) -> None:
        self.retry, self.announce = retry, announce

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        import copy

        said = self.announce and not trial.user_attrs.get("interrupted")
        worker = trial.user_attrs.get("worker")
        trial = copy.copy(trial)  # (the caller's copy keeps its attributes)
        trial.user_attrs = {}
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_ATTR}
        self.retry(study, trial)
        if said:  # the tables note it, but a run that only ended "1 failed" did not say why
            print(dead_worker_line(study, trial.number, worker), file=sys.stderr, flush=True)


def dead_worker_line(study: optuna.Study, number: int, worker: Any) -> str:
    """What to say of trial ``number``, just failed for its worker's death (killed, out of
    memory, machine lost): whether its settings run again, and as which trial."""
    retry = [t.number for t in study.get_trials(deepcopy=False)
             if t.system_attrs.get("failed_trial") == number]
    whose = f"its worker {worker}" if worker else "its worker"
    what = f"its settings are re-queued as trial {retry[-1]}" if retry else \
        "its settings are not re-queued again, as it was already a retry"
    return (f"trial {number}: {whose} stopped before finishing it (process killed or heartbeat "
            f"lost); marked FAIL, and {what}")


def _started(trial: Any, now: float, grace: float) -> float | None:
    """When ``trial`` began, as a Unix time (None if it records no start): a FrozenTrial (the
    journal storage's) or a row of Optuna's SQL trials table (the SQL storage's stale query).

    Optuna 5's table stores the start in UTC (``_datetime_start_utc``), read exactly: not
    through local time, whose clocks go forward and back. A FrozenTrial, and the table of older
    Optunas, give the local time of the machine that began the trial (the machines' time zones
    must agree), read by :func:`_local_time_as_unix`."""
    import datetime

    if hasattr(trial, "_datetime_start_utc"):
        start = trial._datetime_start_utc
        return None if start is None else \
            start.replace(tzinfo=datetime.timezone.utc).timestamp()
    start = trial.datetime_start
    return None if start is None else _local_time_as_unix(start, now, grace)


def _local_time_as_unix(local: datetime.datetime, now: float, grace: float) -> float:
    """``local``, a naive local time of this machine no later than about ``now`` (a Unix
    time), as a Unix time.

    A local time in the hour that the clocks going back repeats stands for two instants an
    hour apart, and Python takes the earlier one: a trial begun in the repeated hour was an
    hour old at once, and a live worker's was failed as stale before its first heartbeat. This
    takes the later of the two that is not in the future (give or take ``grace``, for another
    machine's clock): a trial's start has happened."""
    instants = sorted({local.replace(fold=fold).timestamp() for fold in (0, 1)})
    past = [t for t in instants if t <= now + grace]
    return past[-1] if past else instants[0]


def _callback_kwarg(callback: StaleTrialCallback | None) -> dict[str, Any]:
    import inspect

    import optuna

    names = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    key = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in names \
        else "failed_trial_callback"
    return {key: callback}


@functools.cache
def _heartbeat_journal_storage_class() -> Callable[
        [BaseJournalBackend, int, int, StaleTrialCallback | None],
        optuna.storages.JournalStorage] | None:
    """A ``JournalStorage`` with Optuna's heartbeat protocol (None if this Optuna lacks it)."""
    try:
        from optuna.storages import JournalStorage
        from optuna.storages._heartbeat import BaseHeartbeat
        from optuna.trial import TrialState
    except ImportError:  # pragma: no cover - very old or very new Optuna
        return None
    finished: type[Exception]
    try:
        from optuna.exceptions import UpdateFinishedTrialError

        finished = UpdateFinishedTrialError
    except ImportError:  # Optuna < 4.3 raises a plain RuntimeError (which this one subclasses)
        finished = RuntimeError

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """Heartbeats as a time stamp in each running trial's system attributes. Optuna's
        optimise loop runs the heartbeat thread and ``fail_stale_trials`` for any storage that
        implements :class:`BaseHeartbeat`; the clocks of the machines sharing the journal file
        must agree to within the grace period (NTP)."""

        def __init__(self, backend: BaseJournalBackend, heartbeat: int, grace: int,
                     callback: StaleTrialCallback | None) -> None:
            super().__init__(backend)
            self._heartbeat = heartbeat
            self._grace = grace
            self.grace_period = grace  # (as RDBStorage names it: grace_of)
            self._stale_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(finished):
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False,
                                                             states=(TrialState.RUNNING,))
                    if now - self._last_heartbeat(t, now) > trial_grace(t.user_attrs,
                                                                          self._grace)]

        def _last_heartbeat(self, trial: FrozenTrial, now: float) -> float:
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if beat is not None:
                return float(beat)
            # none yet: a trial that names no worker counts from its start (a process killed
            # before its first one left it RUNNING for ever), one that names its worker is a
            # process's without heartbeats (see _stale_from_its_start)
            start = None if WORKER_ATTR in trial.user_attrs else \
                _started(trial, now, self._grace)
            return now if start is None else start

        def get_heartbeat_interval(self) -> int | None:
            return self._heartbeat

        def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
            return self._stale_callback

        # the name Optuna < 4.9 uses
        def get_failed_trial_callback(self) -> StaleTrialCallback | None:
            return self._stale_callback

    return HeartbeatJournalStorage
