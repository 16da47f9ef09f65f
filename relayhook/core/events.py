"""The common event model (CloudEvents 1.0 attributes plus the `relay` extension)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"

# Keyed event ids are uuid5(EVENT_NAMESPACE, relay + "\n" + key): the same key on the same relay
# is the same event, however often the provider sends it.
EVENT_NAMESPACE = uuid.UUID("6f1f3b9e-8c0e-4a55-9c51-1f0d2f4a7e21")


def keyed_event_id(relay: str, key: str) -> str:
    """The stable id of the event a relay received under a de-duplication key."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{relay}\n{key}"))


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision: `2024-05-01T12:00:00.123Z`."""
    moment = moment.astimezone(UTC)
    if moment.year < 1000:  # strftime's %Y does not pad these: keep its text
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    # Formatted by hand: strftime costs more than the rest of this (it runs per request).
    return (
        f"{moment.year}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time; one without a zone is UTC. ValueError if unreadable."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One normalized happening. `to_cloudevent()` gives its CloudEvents JSON form."""

    id: str
    source: str
    type: str
    subject: str | None
    time: str
    data: Any
    relay: str
    request_id: str = ""
    specversion: str = field(default=SPECVERSION)
    datacontenttype: str = field(default=DATACONTENTTYPE)

    def to_cloudevent(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        out["time"] = self.time
        out["datacontenttype"] = self.datacontenttype
        out["data"] = self.data
        out["relay"] = self.relay
        return out
