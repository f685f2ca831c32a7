"""Version labels (production, staging, …): where each points, moving one, and the history of moves, with
versions named as people name them. The Build page and `workbench label` both use these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.reviews import reviewer
from store import Store


@dataclass(frozen=True)
class Label:
    template: str
    label: str
    version: str  # the label of the version it points at, e.g. co_star@v3


@dataclass(frozen=True)
class Move:
    template: str
    label: str
    before: str | None  # the version it pointed at before, None for a new label
    after: str
    who: str
    at: datetime

    @property
    def text(self) -> str:
        """'co_star@production: co_star@v1 -> co_star@v2' ('(new)' for a first placement)."""
        return f"{self.template}@{self.label}: {self.before or '(new)'} -> {self.after}"


def labels(store: Store, template: str | None = None) -> list[Label]:
    """Every label, or a template's, with the version it points at."""
    return [Label(r.name, r.label, store.get_version(r.version_id).label) for r in store.labels(template)]


def move(store: Store, version: str, label: str, who: str | None = None) -> Move:
    """Point `label` at `version` (NAME@vN, an id, or another label such as co_star@staging)."""
    target = store.get_version(version)
    moved = store.set_label(target.id, label, who or reviewer())
    before = store.get_version(moved.from_version_id).label if moved.from_version_id else None
    return Move(target.name, label, before, target.label, moved.who, moved.at)


def history(store: Store, template: str, label: str | None = None) -> list[Move]:
    """Every move of a template's labels (or of one label), oldest first."""
    return [
        Move(
            m.name,
            m.label,
            store.get_version(m.from_version_id).label if m.from_version_id else None,
            store.get_version(m.to_version_id).label,
            m.who,
            m.at,
        )
        for m in store.label_history(template, label)
    ]


def labelled_versions(store: Store, template: str) -> list[str]:
    """The stored versions of a template a label can point at, newest first."""
    return [v.label for v in store.list_versions(template)][::-1]
