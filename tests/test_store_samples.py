"""The saved-samples part of the store contract, on every engine of conftest.ENGINES: a request
or event pinned by name is a copy, kept whole after retention deletes its original."""

from __future__ import annotations

import dataclasses

from test_store import TIME, linked, make_event, make_request, run

from relayhook.core.events import parse_time
from relayhook.core.samples import pin_event, pin_request
from relayhook.store import Store
from relayhook.store.base import Cutoffs

NOW = parse_time(TIME).timestamp()


def test_a_pinned_request_survives_retention_whole(store: Store) -> None:
    body = b'{"quiz": {"done": true}, "odd": "\\u0000 \xf0\x9f\x98\x80"}'
    record = make_request("req1", body=body, relay="gmetri")
    events = [
        make_event(
            "ev1",
            relay="gmetri",
            type="quiz.done",
            subject="u1",
            data={"score": 9, "text": "nul \x00 here"},
        ),
        make_event("ev2", relay="gmetri", type="quiz.started"),
    ]
    run(store.ingest(record, events))
    stored = run(store.get_request("req1"))
    assert stored is not None
    stored_events = run(store.list_events(request_id="req1"))
    sample = pin_request("Quiz done", stored, stored_events, NOW + 1)
    assert run(store.save_sample(sample))
    assert not run(store.save_sample(dataclasses.replace(sample, source_id="other")))

    # Retention deletes every request and event: the sample is no reference to them.
    pruned = run(store.prune(Cutoffs(default=NOW + 10)))
    assert pruned.requests == 1 and run(store.get_request("req1")) is None

    got = run(store.get_sample("Quiz done"))
    assert got is not None
    assert got.kind == "request" and got.source_id == "req1" and got.saved_at == NOW + 1
    assert got.request is not None and got.request.body == body
    assert got.request.headers == record.headers and got.request.query == record.query
    assert set(got.request.event_ids) == {"ev1", "ev2"}
    assert {e.id: e for e in got.events} == {e.id: e for e in stored_events}
    assert linked(events[0], "req1") in got.events


def test_samples_of_events_are_listed_by_name_replaced_and_deleted(store: Store) -> None:
    first = pin_event("b event", make_event("e1", type="a"), NOW)
    second = pin_event("a event", make_event("e2", type="b"), NOW)
    assert run(store.save_sample(first)) and run(store.save_sample(second))
    assert [s.name for s in run(store.list_samples())] == ["a event", "b event"]
    assert run(store.list_samples())[1].events == (make_event("e1", type="a"),)
    assert run(store.list_samples())[1].request is None

    again = pin_event("b event", make_event("e3", type="c"), NOW + 5)
    assert run(store.save_sample(again, replace=True))
    got = run(store.get_sample("b event"))
    assert got is not None and got.source_id == "e3" and got.events[0].type == "c"

    assert run(store.delete_sample("b event"))
    assert not run(store.delete_sample("b event"))
    assert run(store.get_sample("b event")) is None
    assert [s.name for s in run(store.list_samples())] == ["a event"]
