"""The SQL store: SQLite (WAL) by default, PostgreSQL by URL, one Alembic history.

Every method is one transaction. The head writes finished calls with
`write_batch` (many calls per transaction: group commit) from a thread and
waits for it before a call's response completes, so what a client saw finish
is in the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from saga_hpc.errors import Forbidden, NotFound, UsageError
from saga_hpc.store import aeg, usage
from saga_hpc.store.records import (
    AuthResult,
    CallRecord,
    KeyInfo,
    LedgerBatch,
    Principal,
    StoredCall,
    UsageRow,
    WorkflowOpen,
    WorkflowRow,
    WorkflowStory,
)
from saga_hpc.store.tables import Account, ApiKey, Association, Call, LedgerEntry, User
from saga_hpc.store.writes import LedgerSql

__all__ = ["AuthResult", "CallRecord", "LedgerBatch", "Principal", "Store", "WorkflowOpen"]

MIGRATIONS = Path(__file__).resolve().parents[2] / "db"
_KEY_PREFIX = "saga-"


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._writes = LedgerSql(engine.dialect.name)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, url: str) -> Store:
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            _sqlite_pragmas(engine)
        else:
            try:
                engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            except Exception as exc:  # bad URL or missing driver: a usage error
                raise UsageError(f"cannot use database URL {url!r}: {exc}") from exc
        return cls(engine)

    @property
    def concurrent_writers(self) -> bool:
        """Two transactions can write at once (PostgreSQL); SQLite has one write lock."""
        return self.engine.dialect.name != "sqlite"

    def upgrade(self) -> None:
        """Migrate to the newest schema (idempotent; safe when processes race)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # serialize concurrent upgrades
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7413001)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # ------------------------------------------------- accounts and users

    def ensure_account(self, name: str, parent: str | None = None, fairshare: int = 1) -> None:
        _check_name("account", name)
        with self.session() as s:
            row = s.get(Account, name)
            if row is None:
                s.add(
                    Account(name=name, parent=parent, fairshare=fairshare, created_at=time.time())
                )
            else:
                row.parent, row.fairshare = parent, fairshare

    def ensure_user(self, name: str) -> None:
        _check_name("user", name)
        with self.session() as s:
            if s.get(User, name) is None:
                s.add(User(name=name, created_at=time.time()))

    def ensure_association(self, user: str, account: str, fairshare: int = 1) -> None:
        with self.session() as s:
            if s.get(Account, account) is None:
                raise NotFound(f"no account '{account}'")
            if s.get(User, user) is None:
                raise NotFound(f"no user '{user}'")
            row = s.get(Association, (user, account))
            if row is None:
                s.add(Association(user=user, account=account, fairshare=fairshare))
            else:
                row.fairshare = fairshare

    def remove_association(self, user: str, account: str) -> bool:
        """The user loses the account; their keys for it answer 403 from now on."""
        with self.session() as s:
            gone = delete(Association).where(
                Association.user == user, Association.account == account
            )
            return _rowcount(s.execute(gone)) > 0

    def has_association(self, user: str, account: str) -> bool:
        with self.session() as s:
            return s.get(Association, (user, account)) is not None

    def list_accounts(self) -> list[tuple[str, str | None, int]]:
        with self.session() as s:
            rows = s.execute(
                select(Account.name, Account.parent, Account.fairshare).order_by(Account.name)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def list_associations(self) -> list[tuple[str, str, int]]:
        """(account, user, fairshare), sorted."""
        with self.session() as s:
            rows = s.execute(
                select(Association.account, Association.user, Association.fairshare).order_by(
                    Association.account, Association.user
                )
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def shares(self) -> dict[str, float]:
        """Each account's fair-share weight, normalised to sum 1 (Slurm's entitled share)."""
        accounts = self.list_accounts()
        total = sum(max(fs, 0) for _, _, fs in accounts)
        return {name: (max(fs, 0) / total if total else 0.0) for name, _, fs in accounts}

    # ------------------------------------------------------------- API keys

    def create_api_key(
        self, user: str, account: str, *, ttl_days: float | None = None, note: str | None = None
    ) -> tuple[str, str]:
        """Issue a key; returns (key_id, secret). Only the secret's hash is stored."""
        if not self.has_association(user, account):
            raise Forbidden(f"user '{user}' has no association with account '{account}'")
        key_id = secrets.token_hex(6)
        secret = f"{_KEY_PREFIX}{key_id}-{secrets.token_urlsafe(24)}"
        now = time.time()
        with self.session() as s:
            s.add(
                ApiKey(
                    key_id=key_id,
                    user=user,
                    account=account,
                    secret_sha256=_digest(secret),
                    created_at=now,
                    expires_at=now + ttl_days * 86400 if ttl_days else None,
                    revoked_at=None,
                    note=note,
                )
            )
        return key_id, secret

    def authenticate(self, secret: str) -> AuthResult:
        key_id = _key_id(secret)
        if key_id is None:
            return AuthResult(None, reason="invalid API key")
        with self.session() as s:
            key = s.get(ApiKey, key_id)
            # A plain SHA-256 suffices: secrets carry 192 random bits, so there is
            # nothing to brute-force (unlike passwords, which need a slow hash).
            if key is None or not hmac.compare_digest(key.secret_sha256, _digest(secret)):
                return AuthResult(None, reason="invalid API key")
            if key.revoked_at is not None:
                return AuthResult(None, reason=f"API key {key_id} was revoked")
            if key.expires_at is not None and key.expires_at < time.time():
                return AuthResult(None, reason=f"API key {key_id} has expired")
            if s.get(Association, (key.user, key.account)) is None:
                return AuthResult(
                    None,
                    forbidden=True,
                    reason=(
                        f"user '{key.user}' may no longer use account '{key.account}' "
                        "(no Slurm association)"
                    ),
                )
            return AuthResult(Principal(user=key.user, account=key.account, key_id=key_id))

    def list_api_keys(self, user: str | None = None) -> list[KeyInfo]:
        with self.session() as s:
            q = select(ApiKey).order_by(ApiKey.created_at)
            if user is not None:
                q = q.where(ApiKey.user == user)
            return [
                KeyInfo(
                    k.key_id, k.user, k.account, k.created_at, k.expires_at, k.revoked_at, k.note
                )
                for k in s.scalars(q)
            ]

    def revoke_api_key(self, key_id: str) -> None:
        with self.session() as s:
            n = _rowcount(
                s.execute(
                    update(ApiKey)
                    .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=time.time())
                )
            )
            if n == 0 and s.get(ApiKey, key_id) is None:
                raise NotFound(f"no API key '{key_id}'")

    # ------------------------------------------------ workflows and calls

    def open_workflow(self, workflow_id: str, account: str, user: str, now: float) -> None:
        """Create the workflow if new; a workflow of another account is Forbidden."""
        owners, _ = self.write_batch(
            LedgerBatch(opens=[WorkflowOpen(workflow_id, account, user, now)])
        )
        if owners[0] != account:
            raise Forbidden(f"workflow '{workflow_id}' belongs to another account")

    def record_call(self, rec: CallRecord) -> bool:
        """AEG node + tool edge + ledger row in one transaction. Returns False if
        the call was already recorded (a retry after a crash bills nothing twice)."""
        return self.write_batch(LedgerBatch(calls=[rec]))[1][0]

    def billed_tokens(self, call_id: str) -> tuple[int, int, int] | None:
        """(prompt, cached, output) tokens the ledger billed for a call, if any."""
        with self.session() as s:
            row = s.execute(
                select(
                    LedgerEntry.prompt_tokens, LedgerEntry.cached_tokens, LedgerEntry.output_tokens
                ).where(LedgerEntry.call_id == call_id)
            ).first()
            return None if row is None else (row[0], row[1], row[2])

    def finish_workflow(self, workflow_id: str, now: float) -> None:
        self.write_batch(LedgerBatch(finishes=[(workflow_id, now)]))

    def write_batch(self, batch: LedgerBatch) -> tuple[list[str], list[bool]]:
        """Opens, calls and finishes in one transaction (in that order); returns each
        opened workflow's owner and, per call, whether it was new."""
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                return self._writes.write(cur, batch.opens, batch.calls, batch.finishes)
            finally:
                cur.close()

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        with self.session() as s:
            return aeg.workflow_row(s, workflow_id)

    def workflow_story(self, workflow_id: str) -> WorkflowStory:
        with self.session() as s:
            return aeg.story(s, workflow_id)

    def list_workflows(
        self, account: str | None = None, limit: int = 20
    ) -> list[tuple[WorkflowRow, int]]:
        with self.session() as s:
            return aeg.list_workflows(s, account, limit)

    def account_usage(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        account: str | None = None,
        user: str | None = None,
        by_user: bool = False,
    ) -> list[UsageRow]:
        with self.session() as s:
            return usage.account_usage(s, start, end, account=account, user=user, by_user=by_user)

    def list_calls(self, start: float | None = None, end: float | None = None) -> list[StoredCall]:
        """Every call that finished in [start, end), in finishing order."""
        with self.session() as s:
            return aeg.calls_between(s, start, end)

    def count_calls(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(Call)) or 0)


def _rowcount(result: Any) -> int:
    """Rows a DML statement touched (typed loosely: it is a CursorResult at runtime)."""
    return int(result.rowcount)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key_id(secret: str) -> str | None:
    if not secret.startswith(_KEY_PREFIX):
        return None
    key_id, sep, _ = secret[len(_KEY_PREFIX) :].partition("-")
    return key_id if sep and len(key_id) == 12 else None


def _check_name(kind: str, name: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
        raise UsageError(f"{kind} name {name!r} must be 1-64 letters, digits or ._-")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        # Let SQLAlchemy's "begin" below start transactions, not the driver.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that
        # later writes can fail with "database is locked" without waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
