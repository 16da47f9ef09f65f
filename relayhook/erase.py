"""Erase a person (`relayhook erase --subject EMAIL`, `POST /api/erase`, the console): every kept
request, event, delivery, attempt, outcome, problem and sample that holds the value, and the
spool, with a report of what was found. Events about the person (their subject) go with their
deliveries; everywhere else the value is written over (relayhook.core.erasure). Backups and
log files are named in the report as not covered.

    report = await erase(store, "ann@example.com", spool=parts.spool, spool_path=path)
    print(report.text())
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relayhook.core.erasure import Found, Subject, scrub_event, scrub_record
from relayhook.core.records import Sample
from relayhook.spool import Spool, SpoolError
from relayhook.store import Store

NOT_COVERED = (
    "backups made before now (relayhook backup files, database snapshots, disk images)",
    "log files, and copies already sent to the hooks' receivers",
    "the configuration (config file, hooks and connectors), which is not searched",
)


@dataclass
class Report:
    subject: str
    found: Found
    samples: int = 0
    spool: int = 0
    spool_note: str | None = None
    not_covered: tuple[str, ...] = NOT_COVERED
    notes: list[str] = field(default_factory=list)

    def total(self) -> int:
        return (
            sum(self.found.deleted.values())
            + sum(self.found.scrubbed.values())
            + self.samples
            + self.spool
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "total": self.total(),
            "deleted": self.found.deleted,
            "overwritten": self.found.scrubbed,
            "samples": self.samples,
            "spool": self.spool,
            "spool_note": self.spool_note,
            "not_covered": list(self.not_covered),
        }

    def text(self) -> str:
        lines = [f"erased {self.subject}: {self.total()} places"]
        for what, counts in (("deleted", self.found.deleted), ("overwritten", self.found.scrubbed)):
            for table, count in sorted(counts.items()):
                if count:
                    lines.append(f"  {what}: {count} {table}")
        if self.samples:
            lines.append(f"  samples changed: {self.samples}")
        if self.spool:
            lines.append(f"  spooled requests overwritten: {self.spool}")
        if self.spool_note:
            lines.append(f"  spool: {self.spool_note}")
        lines.append("not covered (erase these yourself):")
        lines += [f"  - {item}" for item in self.not_covered]
        return "\n".join(lines) + "\n"


async def erase(
    store: Store, value: str, *, spool: Spool | None = None, spool_path: Path | None = None
) -> Report:
    """Erase `value` everywhere Relayhook keeps it. `spool`: this process's open spool (the
    server's); else `spool_path` is opened if no running server holds it."""
    subject = Subject.of(value)
    report = Report(subject.value, await store.erase_subject(subject))
    report.samples = await _erase_samples(store, subject)
    report.spool, report.spool_note = _erase_spool(subject, spool, spool_path)
    return report


async def _erase_samples(store: Store, subject: Subject) -> int:
    changed = 0
    for sample in await store.list_samples():
        scrubbed = scrub_sample(subject, sample)
        if scrubbed is None:
            continue
        changed += 1
        if scrubbed.request is None and not scrubbed.events:
            await store.delete_sample(sample.name)
        else:
            await store.save_sample(scrubbed, replace=True)
    return changed


def scrub_sample(subject: Subject, sample: Sample) -> Sample | None:
    """A sample without the person: their events dropped, the value written over elsewhere."""
    events = []
    touched = False
    for event in sample.events:
        if subject.is_subject(event.subject):
            touched = True
            continue
        scrubbed = scrub_event(subject, event)
        touched |= scrubbed is not None
        events.append(scrubbed or event)
    request = sample.request
    if request is not None and (scrubbed_request := scrub_record(subject, request)):
        request, touched = scrubbed_request, True
    if not touched:
        return None
    return dataclasses.replace(sample, events=tuple(events), request=request)


def _erase_spool(
    subject: Subject, spool: Spool | None, path: Path | None
) -> tuple[int, str | None]:
    def scrub(record: Any) -> Any:
        return scrub_record(subject, record)

    if spool is not None:
        return spool.scrub(scrub), None
    if path is None or not (path.exists() or path.with_name(path.name + ".bad").exists()):
        return 0, None
    own = Spool(path)
    try:
        own.open()
    except SpoolError:
        return 0, (
            "held by a running server: erase through its console or POST /api/erase"
            " to cover the requests waiting in it"
        )
    try:
        return own.scrub(scrub), None
    finally:
        own.close()
