"""The triggers that bump `tenants.CacheVersion` whenever a row an API answer is cached from changes.

A table's trigger bumps its tenant's version (the row's `tenant_id`, before and after the write) or
the catalog's (scope 0, for tables every tenant reads, such as the plans). The bump is an upsert of
the version row in the writing transaction: it commits (or rolls back) with the change, and two
writers of one tenant take turns on its row, so a version read after a change committed is never
the version read before it.

PostgreSQL takes each new version from one sequence (a value never repeats, even after a rollback);
the embedded SQLite default adds one. Each app's migration installs the triggers of its own tables
with `install()` / `uninstall()` (`migrations.RunPython`)."""

from __future__ import annotations

from typing import Any, Literal

Scope = Literal["tenant", "catalog"]

TABLE = "tenants_cacheversion"
SEQUENCE = "tenants_cacheversion_seq"

POSTGRES_FUNCTIONS = [
    f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE}",
    f"""CREATE OR REPLACE FUNCTION allowance_cache_bump(p_scope bigint) RETURNS void LANGUAGE sql AS $$
  INSERT INTO {TABLE} (scope, version) VALUES (p_scope, nextval('{SEQUENCE}'))
  ON CONFLICT (scope) DO UPDATE SET version = EXCLUDED.version
$$""",  # noqa: S608 (names of ours)
    """CREATE OR REPLACE FUNCTION allowance_cache_bump_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM allowance_cache_bump(OLD.tenant_id);
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) THEN
    PERFORM allowance_cache_bump(NEW.tenant_id);
  END IF;
  RETURN NULL;
END $$""",
    """CREATE OR REPLACE FUNCTION allowance_cache_bump_catalog() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM allowance_cache_bump(0);
  RETURN NULL;
END $$""",
]

POSTGRES_FUNCTIONS_DROP = [
    "DROP FUNCTION IF EXISTS allowance_cache_bump_catalog()",
    "DROP FUNCTION IF EXISTS allowance_cache_bump_tenant()",
    "DROP FUNCTION IF EXISTS allowance_cache_bump(bigint)",
    f"DROP SEQUENCE IF EXISTS {SEQUENCE}",
]


def _sqlite_bump(scope_expr: str) -> str:
    return (
        f"INSERT INTO {TABLE} (scope, version) VALUES ({scope_expr}, 1) "  # noqa: S608 (names of ours)
        "ON CONFLICT (scope) DO UPDATE SET version = version + 1;"
    )


def _trigger_name(table: str) -> str:
    return f"{table}_cache_bump"


def create_sql(vendor: str, table: str, scope: Scope) -> list[str]:
    name = _trigger_name(table)
    if vendor == "postgresql":
        if scope == "catalog":
            return [
                f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION allowance_cache_bump_catalog()"
            ]
        return [
            f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION allowance_cache_bump_tenant()"
        ]
    if vendor == "sqlite":
        new, old = ("0", "0") if scope == "catalog" else ("NEW.tenant_id", "OLD.tenant_id")
        return [
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {_sqlite_bump(new)} END",
            f"CREATE TRIGGER {name}_update AFTER UPDATE ON {table} BEGIN {_sqlite_bump(old)} "
            + ("" if scope == "catalog" else _sqlite_bump(new))
            + " END",
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN {_sqlite_bump(old)} END",
        ]
    raise NotImplementedError(f"No cache-version triggers for the {vendor} database.")


def drop_sql(vendor: str, table: str) -> list[str]:
    name = _trigger_name(table)
    if vendor == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON {table}"]
    return [f"DROP TRIGGER IF EXISTS {name}_{op}" for op in ("insert", "update", "delete")]


def install(tables: dict[str, Scope]) -> Any:
    """A `RunPython` forward function installing the triggers of `tables` on this database."""

    def forward(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        for table, scope in tables.items():
            for sql in create_sql(vendor, table, scope):
                schema_editor.execute(sql)

    return forward


def uninstall(tables: dict[str, Scope]) -> Any:
    def backward(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        for table in tables:
            for sql in drop_sql(vendor, table):
                schema_editor.execute(sql)

    return backward


def functions_install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_FUNCTIONS:
            schema_editor.execute(sql)


def functions_uninstall(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_FUNCTIONS_DROP:
            schema_editor.execute(sql)
