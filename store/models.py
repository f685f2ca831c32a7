"""SQLModel tables: template versions, suites and cases, provider configurations, runs, results, scores.

JSON columns hold structured values (variables, messages, assertions). Provider configurations never hold a
secret: a remote key is named by the environment variable that holds it (`api_key_env`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class TemplateVersion(SQLModel, table=True):
    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    library_ref: str | None = None  # a library template name, when the source is the library's
    source: str = Field(sa_column=Column(Text, nullable=False))
    variables: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    delimiter: str = "hash"
    guardrails: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    options: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )  # drop_sections
    note: str = ""
    content_hash: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    kind: str | None = "user"  # user | variant (made by the workbench, e.g. an ablation; hidden from pickers)
    parent_id: int | None = None  # a variant's version

    @property
    def label(self) -> str:
        return self.name if self.kind == "variant" else f"{self.name}@v{self.version}"


class Suite(SQLModel, table=True):
    __tablename__ = "suites"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = ""
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class TestCase(SQLModel, table=True):
    __tablename__ = "test_cases"
    __test__ = False  # not a pytest class

    id: int | None = Field(default=None, primary_key=True)
    suite_id: int = Field(foreign_key="suites.id", index=True)
    position: int = 0
    description: str = ""
    vars: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    expected: str | None = None
    assertions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    threshold: float | None = None


class ProviderConfig(SQLModel, table=True):
    __tablename__ = "provider_configs"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(index=True, unique=True)
    kind: str  # "local" | "remote"
    base_url: str | None = None
    model: str
    quant: str | None = None
    api_key_env: str | None = None  # the NAME of the environment variable holding the key, never the key
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


RUN_STATUSES = ("queued", "running", "completed", "interrupted", "cancelled", "failed")
ACTIVE_STATUSES = ("queued", "running")  # a worker will (still) execute cells of a run in one of these


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: str = Field(primary_key=True)
    suite_id: int | None = Field(default=None, foreign_key="suites.id")
    description: str = ""
    version_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    provider_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    strategy: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    repeats: int = 1
    status: str = "queued"  # one of RUN_STATUSES
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    # how to execute (concurrency, cache: reuse | fresh), what it is part of (kind, parent), what it measured
    # (startup_s)
    options: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Result(SQLModel, table=True):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "case_id", "version_id", "provider_id", "repeat_index"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    case_id: int = Field(foreign_key="test_cases.id")
    version_id: int = Field(foreign_key="template_versions.id")
    provider_id: int = Field(foreign_key="provider_configs.id")
    repeat_index: int = 0
    messages: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    output: str | None = Field(default=None, sa_column=Column(Text))
    answer: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    logprobs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0
    cached: bool = False
    error: str | None = Field(default=None, sa_column=Column(Text))
    passed: bool | None = None
    score: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Score(SQLModel, table=True):
    __tablename__ = "scores"

    id: int | None = Field(default=None, primary_key=True)
    result_id: int = Field(foreign_key="results.id", index=True)
    position: int = 0
    type: str
    value: Any = Field(default=None, sa_column=Column(JSON))
    weight: float = 1.0
    passed: bool
    score: float
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    turn: str | None = None  # in a conversation: the turn judged ("2", "all", "any", "transcript")


class CachedResponse(SQLModel, table=True):
    __tablename__ = "response_cache"

    key: str = Field(primary_key=True)
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    scope: str = "shared"  # "shared" (any run may reuse it) or "run:ID" (only that run: a sampled answer)
    created_at: datetime = Field(default_factory=utcnow)


class SchemaMigration(SQLModel, table=True):
    __tablename__ = "schema_migrations"

    name: str = Field(primary_key=True)
    applied_at: datetime = Field(default_factory=utcnow)


class RunCell(SQLModel, table=True):
    """One planned cell of a run: the queue that workers claim from (pending -> claimed -> done)."""

    __tablename__ = "run_cells"
    __table_args__ = (UniqueConstraint("run_id", "case_id", "version_id", "provider_id", "repeat_index"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    case_id: int
    version_id: int
    provider_id: int
    repeat_index: int = 0
    state: str = Field(default="pending", index=True)  # pending | claimed | done
    worker_id: str | None = None
    claimed_at: datetime | None = None


class Worker(SQLModel, table=True):
    """A live `workbench worker` (or a CLI run executing in its own process): its heartbeat keeps its claims."""

    __tablename__ = "workers"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    process_started: float = 0.0  # the process's start time, so a reused pid is not taken for the worker
    only_run: str | None = None  # set when the worker serves one run (a CLI run), None for `workbench worker`
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)


class Rating(SQLModel, table=True):
    """A person's judgement of one output: it belongs to (case, rendered messages, output) — the `subject` hash —
    so it reappears wherever the same output appears again, and never on a different one."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("subject", "reviewer"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(index=True)
    reviewer: str
    passed: bool
    score: int | None = None  # 1..5
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    result_id: int | None = (
        None  # the cell it was first given on (for the record; the subject is what counts)
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class VersionLabel(SQLModel, table=True):
    """A label (production, staging, ...) pointing at one version of a template name."""

    __tablename__ = "version_labels"
    __table_args__ = (UniqueConstraint("name", "label"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    label: str
    version_id: int = Field(foreign_key="template_versions.id")


class LabelMove(SQLModel, table=True):
    """Every move of a label: who moved it, when, from which version to which."""

    __tablename__ = "label_moves"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    label: str
    from_version_id: int | None = None
    to_version_id: int
    who: str
    at: datetime = Field(default_factory=utcnow)


OPTIMIZATION_STATUSES = ("queued", "running", "completed", "cancelled", "failed")


class Optimization(SQLModel, table=True):
    """A prompt optimisation as a job: what it searches (suite, starting version, target and proposer), its
    settings, where it stands (`state`: the split, proposals, demonstrations, trials and their runs) and, once
    done, its report. A worker drives it step by step (`owner`); its evaluations are ordinary runs."""

    __tablename__ = "optimizations"

    id: str = Field(primary_key=True)
    suite_id: int = Field(foreign_key="suites.id")
    version_id: int = Field(foreign_key="template_versions.id")
    provider_id: int = Field(foreign_key="provider_configs.id")
    proposer_id: int = Field(foreign_key="provider_configs.id")
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = "queued"  # one of OPTIMIZATION_STATUSES
    phase: str = "split"
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = Field(default=None, sa_column=Column(Text))
    owner: str | None = None  # the worker driving it now
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
