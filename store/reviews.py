"""Ratings of outputs and version labels (with every move recorded)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import select

from store.db import StoreError
from store.models import LabelMove, Rating, TemplateVersion, VersionLabel, utcnow


class ReviewQueries:
    """Mixin of Store: ratings and labels."""

    def rate(
        self,
        subject: str,
        reviewer: str,
        passed: bool,
        *,
        score: int | None = None,
        tags: list[str] = (),
        comment: str = "",
        result_id: int | None = None,
    ) -> Rating:
        """Record (or update) a reviewer's rating of a subject."""
        if score is not None and not 1 <= score <= 5:
            raise StoreError(f"a rating's score is 1 to 5, got {score}")
        with self.session() as s:
            row = s.exec(select(Rating).where(Rating.subject == subject, Rating.reviewer == reviewer)).first()
            if row is None:
                row = Rating(subject=subject, reviewer=reviewer, passed=passed, result_id=result_id)
                s.add(row)
            row.passed, row.score, row.tags, row.comment = passed, score, list(tags), comment
            row.updated_at = utcnow()
            s.flush()
            return row

    def ratings(self, subjects: Iterable[str]) -> dict[str, list[Rating]]:
        """Every rating of these subjects, newest first."""
        wanted = list(dict.fromkeys(subjects))
        out: dict[str, list[Rating]] = {}
        with self.session() as s:
            for start in range(0, len(wanted), 500):
                query = select(Rating).where(Rating.subject.in_(wanted[start : start + 500]))
                for row in s.exec(query.order_by(Rating.updated_at.desc())):
                    out.setdefault(row.subject, []).append(row)
        return out

    # --- labels --------------------------------------------------------------------------------------------

    def set_label(self, version_id: int, label: str, who: str) -> LabelMove:
        """Point `label` of the version's template name at this version; the move is recorded."""
        with self.session() as s:
            version = s.get(TemplateVersion, version_id)
            if version is None:
                raise StoreError(f"no template version with id {version_id}")
            row = s.exec(
                select(VersionLabel).where(VersionLabel.name == version.name, VersionLabel.label == label)
            ).first()
            before = row.version_id if row else None
            if row is None:
                row = VersionLabel(name=version.name, label=label, version_id=version_id)
                s.add(row)
            row.version_id = version_id
            move = LabelMove(
                name=version.name, label=label, from_version_id=before, to_version_id=version_id, who=who
            )
            s.add(move)
            s.flush()
            return move

    def labels(self, name: str | None = None) -> list[VersionLabel]:
        with self.session() as s:
            query = select(VersionLabel).order_by(VersionLabel.name, VersionLabel.label)
            return list(s.exec(query.where(VersionLabel.name == name) if name else query))

    def label_history(self, name: str, label: str | None = None) -> list[LabelMove]:
        with self.session() as s:
            query = select(LabelMove).where(LabelMove.name == name)
            if label:
                query = query.where(LabelMove.label == label)
            return list(s.exec(query.order_by(LabelMove.at, LabelMove.id)))

    def labelled_version(self, name: str, label: str) -> TemplateVersion:
        with self.session() as s:
            row = s.exec(
                select(VersionLabel).where(VersionLabel.name == name, VersionLabel.label == label)
            ).first()
            if row is None:
                known = [r.label for r in s.exec(select(VersionLabel).where(VersionLabel.name == name))]
                raise StoreError(
                    f"no label '{label}' on '{name}'" + (f"; its labels: {', '.join(known)}" if known else "")
                )
            return s.get(TemplateVersion, row.version_id)
