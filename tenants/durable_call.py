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
installed by each app's migration (`Function.install`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection, migrations


@dataclass(frozen=True)
class Function:
    """A PostgreSQL function that writes and answers one row: its name, its parameters as (name,
    type) and its result's columns, in order, as (name, type)."""

    name: str
    arguments: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]
    select_sql: str = field(init=False, repr=False)
    call_sql: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        placeholders = ", ".join(f"%s::{kind}" for _, kind in self.arguments)
        nulls = ", ".join("NULL" for _ in self.columns)  # the INOUT parameters
        object.__setattr__(self, "select_sql", f"SELECT * FROM {self.name}({placeholders})")  # noqa: S608 (names of ours)
        object.__setattr__(self, "call_sql", f"CALL {self.procedure}({placeholders}, {nulls})")

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

    def create_sql(self) -> str:
        """The procedure that runs the function durably and hands back its row (its INOUT
        parameters)."""
        params = ", ".join(f"{name} {kind}" for name, kind in self.arguments)
        outs = ", ".join(f"INOUT {name} {kind}" for name, kind in self.columns)
        into = ", ".join(name for name, _ in self.columns)
        args = ", ".join(name for name, _ in self.arguments)
        return f"""
CREATE OR REPLACE PROCEDURE {self.procedure}({params}, {outs})
LANGUAGE plpgsql AS $$
BEGIN
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

    def drop_sql(self) -> str:
        kinds = ", ".join(kind for _, kind in [*self.arguments, *self.columns])
        return f"DROP PROCEDURE IF EXISTS {self.procedure}({kinds})"

    def install(self) -> migrations.RunPython:
        """The migration operation that installs the procedure on PostgreSQL (and drops it when
        unapplied); nothing on the embedded SQLite default, which runs no functions."""

        def forward(apps: Any, schema_editor: Any) -> None:
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(self.create_sql())

        def backward(apps: Any, schema_editor: Any) -> None:
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(self.drop_sql())

        return migrations.RunPython(forward, backward, elidable=False)
