"""A hot write that lets go of its row locks before the WAL flush and answers only after it.

A write serialized on one hot row (a tenant's wallet) holds that row's lock until its commit, and a
synchronous commit returns only once the WAL is flushed: the next writer of the row waits for the
flush of the one before it, one flush at a time (`docs/performance-history.md` measured it). A
`durable` procedure wraps a write's function so that the write

1. commits with `synchronous_commit = off` for that transaction only: the commit record is in the
   WAL, the locks are released at once, and the next writer of the row can go on;
2. then, in a second transaction, waits for the flush: it writes one WAL record (a transactional
   `pg_logical_emit_message`, which any role may call) and commits synchronously, at the
   session's own `synchronous_commit` (and to the standbys it names). The WAL is flushed in order,
   so that flush covers the write's commit, and everything the write read, before the procedure
   returns, and only then does the caller answer.

So no answered write is lost: a crash before the flush loses a write that nobody was answered for,
and the client's retry with the same idempotency key makes it then. Two writers of one row wait for
their flushes side by side, and PostgreSQL flushes them together (group commit). What it gives up:
another session may read the write in the moment between its commit and its flush (as readers of a
primary may with synchronous replication); the writes that use it touch no cache-version row
(`tenants.db_triggers`), so no cached answer is built on such a read.

When nothing it read or wrote is left to flush (a refusal after the WAL writer caught up), the
second transaction is skipped. With synchronous standbys it is never skipped: the local flush
says nothing of theirs.

A procedure can commit only when CALL is its own top-level statement: inside a transaction
(`transaction.atomic`, and the test cases that run in one) the caller runs the function itself,
which commits, or rolls back, with the caller's transaction (`statement_sql`). The procedures are
installed by each app's migration (`Function.install`).

A procedure whose function names its tenant (`tenant_argument`) also confirms the request's API key
when the key came from the process's memory (`tenants.key_confirmation`): before the function runs,
in the same transaction, it checks that the key is the tenant's, not revoked, and that the cache
versions the request used are current; if not, it writes nothing and says so (`call`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, migrations

from tenants import key_confirmation
from tenants.first_statement import ConnectionWasClosed, execute_first


@dataclass(frozen=True)
class Function:
    """A PostgreSQL function that writes and answers one row: its name, its parameters as (name,
    type) and its result's columns, in order, as (name, type). `tenant_argument`: the parameter
    that names the tenant, for a procedure that confirms a remembered API key (None: it does not)."""

    name: str
    arguments: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]
    tenant_argument: str | None = None
    select_sql: str = field(init=False, repr=False)
    call_sql: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        placeholders = ", ".join(f"%s::{kind}" for _, kind in self.procedure_arguments)
        nulls = ", ".join("NULL" for _ in self.procedure_columns)  # the INOUT parameters
        select = ", ".join(f"%s::{kind}" for _, kind in self.arguments)
        object.__setattr__(self, "select_sql", f"SELECT * FROM {self.name}({select})")  # noqa: S608 (names of ours)
        object.__setattr__(self, "call_sql", f"CALL {self.procedure}({placeholders}, {nulls})")

    @property
    def _confirms_key(self) -> bool:
        return self.tenant_argument is not None

    @property
    def procedure_arguments(self) -> tuple[tuple[str, str], ...]:
        if not self._confirms_key:
            return self.arguments
        return (*self.arguments, *_KEY_ARGUMENTS)

    @property
    def procedure_columns(self) -> tuple[tuple[str, str], ...]:
        return (*self.columns, _KEY_COLUMN) if self._confirms_key else self.columns

    @property
    def procedure(self) -> str:
        return f"{self.name}_durable"

    def statement_sql(self) -> str:
        """The statement that runs the function, with one `%s` per argument: its durable procedure
        when this connection is not inside a transaction, otherwise the function itself (in the
        caller's transaction). Either answers one row of `columns`."""
        if connection.in_atomic_block or not connection.get_autocommit():
            return self.select_sql
        return self.call_sql

    def call(self, arguments: Sequence[Any]) -> tuple[Any, ...]:
        """Run the function with these arguments (by `statement_sql`) and answer its row.

        With a request's remembered API key still unconfirmed (`tenants.key_confirmation`), the
        procedure confirms it before it writes: not current, nothing is written and `KeyStale` is
        raised. Then it is the request's first statement, and the connection's health check as the
        key's read is otherwise (`tenants.first_statement`): a connection found closed is replaced
        and `KeyStale` raised, so that the request runs again from the key's read."""
        sql = self.statement_sql()
        confirming = self._confirms_key and sql == self.call_sql
        pending = key_confirmation.pending() if confirming else None
        params = list(arguments)
        if confirming:
            params += pending.vouch() if pending is not None else (None, None, None)
        if pending is None:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
        else:
            try:
                row = execute_first(sql, params)
            except ConnectionWasClosed:
                # Nothing ran (or, cut off while it ran, it ran once, and the run again answers it by
                # its idempotency key): the request runs again from the key's read.
                raise key_confirmation.KeyStale from None
        assert row is not None
        if not confirming:
            return tuple(row)
        *answer, current = row
        if pending is not None:
            pending.vouched(current)
        return tuple(answer)

    def create_sql(self) -> str:
        """The procedure that runs the function durably and hands back its row (its INOUT
        parameters)."""
        params = ", ".join(f"{name} {kind}" for name, kind in self.procedure_arguments)
        outs = ", ".join(f"INOUT {name} {kind}" for name, kind in self.procedure_columns)
        into = ", ".join(name for name, _ in self.columns)
        args = ", ".join(name for name, _ in self.arguments)
        return f"""
CREATE OR REPLACE PROCEDURE {self.procedure}({params}, {outs})
LANGUAGE plpgsql AS $$
BEGIN{self._key_check_sql()}
  -- The write, committed without waiting for the flush: its row locks are released at once.
  PERFORM set_config('synchronous_commit', 'off', true);
  SELECT * INTO {into} FROM {self.name}({args});
  COMMIT;
  -- Then wait for the flush (tenants.durable_call): one WAL record, committed synchronously.
  IF current_setting('synchronous_standby_names') <> ''
      OR pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn() THEN
    PERFORM pg_logical_emit_message(true, 'allowance_durable', '');
    COMMIT;
  END IF;
END $$"""  # noqa: S608 (names of ours)

    def _key_check_sql(self) -> str:
        if not self._confirms_key:
            return ""
        from tenants.models import ApiKey, CacheVersion

        keys, versions, tenant = ApiKey._meta.db_table, CacheVersion._meta.db_table, self.tenant_argument
        return f"""
  -- A remembered API key (tenants.key_confirmation): the write runs only if the key is still the
  -- tenant's and not revoked, and the cache versions the request used are still current.
  IF p_confirm_key IS NOT NULL AND (
      NOT EXISTS (SELECT 1 FROM {keys} k
                  WHERE k.id = p_confirm_key AND k.tenant_id = {tenant} AND k.revoked_at IS NULL)
      OR COALESCE((SELECT v.version FROM {versions} v WHERE v.scope = {tenant}), 0)
         IS DISTINCT FROM p_tenant_version
      OR COALESCE((SELECT v.version FROM {versions} v WHERE v.scope = {CacheVersion.CATALOG}), 0)
         IS DISTINCT FROM p_catalog_version) THEN
    o_key_current := false;
    RETURN;
  END IF;
  o_key_current := true;"""  # noqa: S608 (names of ours)

    def drop_sql(self) -> str:
        kinds = ", ".join(kind for _, kind in [*self.procedure_arguments, *self.procedure_columns])
        return f"DROP PROCEDURE IF EXISTS {self.procedure}({kinds})"

    def install(self) -> migrations.RunPython:
        """The migration operation that installs the procedure on PostgreSQL (and drops it when
        unapplied); nothing on the embedded SQLite default, which runs no functions."""
        return migrations.RunPython(self._create, self._drop, elidable=False)

    def uninstall(self) -> migrations.RunPython:
        """The reverse of `install`: the operation that drops this procedure (to install another
        signature in its place) and creates it again when unapplied."""
        return migrations.RunPython(self._drop, self._create, elidable=False)

    def _create(self, apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.create_sql())

    def _drop(self, apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.drop_sql())


# What a key-confirming procedure takes after the function's arguments, and answers after its row.
_KEY_ARGUMENTS = (
    ("p_confirm_key", "bigint"),
    ("p_tenant_version", "bigint"),
    ("p_catalog_version", "bigint"),
)
_KEY_COLUMN = ("o_key_current", "boolean")
