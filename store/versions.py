"""Template versions: immutable, numbered per name, identified by a content hash."""

from __future__ import annotations

import hashlib
import json

from sqlmodel import select

from store.db import StoreError, retry_write_race
from store.models import TemplateVersion


def content_hash(
    source: str, variables: dict, delimiter: str, guardrails: dict | None, options: dict | None = None
) -> str:
    payload = json.dumps(
        [source, variables, delimiter, guardrails, options or {}], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class VersionQueries:
    """Mixin of Store: reads and writes of template versions."""

    def save_version(
        self,
        name: str,
        source: str,
        *,
        variables: dict | None = None,
        delimiter: str = "hash",
        guardrails: dict | None = None,
        note: str = "",
        library_ref: str | None = None,
        options: dict | None = None,
        parent_id: int | None = None,
        kind: str | None = None,
    ) -> TemplateVersion:
        """A new immutable version; content identical to the latest version of `name` returns that one. With a
        `parent_id` it is a variant of that version (its name should say which), hidden from version pickers,
        unless `kind` is "user" (an optimisation's winner: a version of its own that remembers its parent)."""
        variables = variables or {}
        digest = content_hash(source, variables, delimiter, guardrails, options)

        def write() -> TemplateVersion:
            with self.session() as s:
                latest = s.exec(
                    select(TemplateVersion)
                    .where(TemplateVersion.name == name)
                    .order_by(TemplateVersion.version.desc())
                ).first()
                if latest is not None and latest.content_hash == digest:
                    return latest
                row = TemplateVersion(
                    name=name,
                    version=(latest.version + 1) if latest else 1,
                    source=source,
                    variables=variables,
                    delimiter=delimiter,
                    guardrails=guardrails,
                    note=note,
                    library_ref=library_ref,
                    options=options or {},
                    content_hash=digest,
                    kind=kind or ("variant" if parent_id else "user"),
                    parent_id=parent_id,
                )
                s.add(row)
                s.flush()
                return row

        return retry_write_race(write, f"saving a version of '{name}'")

    def list_versions(self, name: str | None = None, include_variants: bool = False) -> list[TemplateVersion]:
        """Versions by name and number; variants (made by the workbench) only when asked for."""
        with self.session() as s:
            query = select(TemplateVersion).order_by(TemplateVersion.name, TemplateVersion.version)
            if name:
                query = query.where(TemplateVersion.name == name)
            if not include_variants:
                query = query.where((TemplateVersion.kind != "variant") | TemplateVersion.kind.is_(None))
            return list(s.exec(query))

    def get_version(self, ref: str | int) -> TemplateVersion:
        """By id, `name@vN`, `name@LABEL` (a version label such as production), or `name` (its latest)."""
        text = str(ref)
        if "@" in text and not text.rpartition("@")[2].removeprefix("v").isdigit():
            name, _, label = text.rpartition("@")
            return self.labelled_version(name, label)
        with self.session() as s:
            if isinstance(ref, int) or str(ref).isdigit():
                row = s.get(TemplateVersion, int(ref))
            elif "@v" in str(ref) and str(ref).rpartition("@v")[2].isdigit():
                name, _, number = str(ref).rpartition("@v")
                row = s.exec(
                    select(TemplateVersion).where(
                        TemplateVersion.name == name, TemplateVersion.version == int(number)
                    )
                ).first()
            else:
                row = s.exec(
                    select(TemplateVersion)
                    .where(TemplateVersion.name == ref)
                    .order_by(TemplateVersion.version.desc())
                ).first()
            if row is None:
                raise StoreError(f"no template version '{ref}'")
            return row
