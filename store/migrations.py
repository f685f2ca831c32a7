"""Schema changes as named, ordered steps, each applied once and recorded in `schema_migrations`.

Add a step by appending a function; never edit one that has shipped. `create_all` is used only by the first
step (it creates tables that do not exist and never alters existing ones).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text, update
from sqlmodel import SQLModel

from store import models

MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = []


def migration(fn: Callable[[Connection], None]) -> Callable[[Connection], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial_tables(conn: Connection) -> None:
    tables = [
        models.TemplateVersion,
        models.Suite,
        models.TestCase,
        models.ProviderConfig,
        models.Run,
        models.Result,
        models.Score,
        models.CachedResponse,
    ]
    SQLModel.metadata.create_all(conn, tables=[t.__table__ for t in tables])


@migration
def m002_run_queue(conn: Connection) -> None:
    """Runs become jobs: their planned cells are a queue claimed by workers; runs carry execution options."""
    SQLModel.metadata.create_all(conn, tables=[models.RunCell.__table__, models.Worker.__table__])
    add_column(conn, "runs", "options", "JSON")


@migration
def m003_version_variants(conn: Connection) -> None:
    """Versions the workbench makes (ablation variants) belong to the version they came from."""
    add_column(conn, "template_versions", "kind", "VARCHAR DEFAULT 'user'")
    add_column(conn, "template_versions", "parent_id", "INTEGER")


@migration
def m004_reviews_and_labels(conn: Connection) -> None:
    """Human ratings of outputs, and version labels with their history."""
    tables = [models.Rating.__table__, models.VersionLabel.__table__, models.LabelMove.__table__]
    SQLModel.metadata.create_all(conn, tables=tables)


@migration
def m005_cache_scopes(conn: Connection) -> None:
    """Cached responses carry their scope: a sampled answer is reused only inside its own run. Entries from before
    were keyed without a scope and can never be found again, so they go; runs record a cache policy (reuse or
    fresh) instead of the `use_cache` flag."""
    add_column(conn, "response_cache", "scope", "VARCHAR DEFAULT 'shared'")
    conn.execute(text("DELETE FROM response_cache"))
    runs = models.Run.__table__
    for run_id, options in conn.execute(select(runs.c.id, runs.c.options)).all():
        if options and "use_cache" in options:
            kept = {k: v for k, v in options.items() if k != "use_cache"}
            kept["cache"] = "reuse" if options["use_cache"] else "fresh"
            conn.execute(update(runs).where(runs.c.id == run_id).values(options=kept))


@migration
def m006_optimizations(conn: Connection) -> None:
    """Prompt optimisations are jobs too: their state and report, driven by a worker."""
    SQLModel.metadata.create_all(conn, tables=[models.Optimization.__table__])


@migration
def m007_score_turns(conn: Connection) -> None:
    """Conversation cases judge assertions by turn; each score says which."""
    add_column(conn, "scores", "turn", "VARCHAR(16)")


def add_column(conn: Connection, table: str, column: str, ddl_type: str) -> None:
    """ALTER TABLE ADD COLUMN, unless the column exists (m001 creates tables from today's models, so a fresh
    database already has the columns that later steps add to older ones)."""
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}"))


def applied(conn: Connection) -> set[str]:
    if not inspect(conn).has_table("schema_migrations"):
        return set()
    return {row[0] for row in conn.execute(text("SELECT name FROM schema_migrations"))}


def migrate(conn: Connection) -> list[str]:
    """Apply every pending step in order, each in the caller's transaction; returns the names applied."""
    SQLModel.metadata.create_all(conn, tables=[models.SchemaMigration.__table__])
    done = applied(conn)
    ran = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        step(conn)
        conn.execute(
            text("INSERT INTO schema_migrations (name, applied_at) VALUES (:n, CURRENT_TIMESTAMP)"),
            {"n": name},
        )
        ran.append(name)
    return ran
