"""What masking secrets by where templates read them costs the delivery path: a delivery's
request rendered and recorded for the history as the dispatcher does it (`render_request`, then
`record_request`), against the old exact-value redaction alone (`OutboundRequest.record`), for a
hook that reads no secret and for one whose header reads `{{ secrets.crm }}`. A benchmark, not a
test: it prints CPU microseconds per delivery (best of 5 alternated rounds).

    python bench/masking.py                # 5 rounds x 5,000 deliveries per case
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from relayhook.core.events import Event
from relayhook.core.hooks import Hook, build_hooks
from relayhook.core.outbound import record_request, render_request

SECRETS = {"crm": "SuperSecretToken42", "other": "not read by these hooks"}
EVENT = Event(
    "e-1",
    "gmetri/org/dep",
    "gmetri.rule.triggered",
    "amit@gmetri.com",
    "2024-05-01T12:00:00.000Z",
    {"rule_id": "r-17", "rule": "Quiz completed", "scene": "Lobby", "score": 75},
    "gm",
)
BODY = "{{ {'rule': event.data.rule, 'who': event.subject, 'score': event.data.score} }}"
HOOKS = build_hooks(
    [
        {
            "name": "plain",
            "events": ["*"],
            "url": "https://hooks.example/catch/1/",
            "headers": {"X-Source": "{{ event.source }}"},
            "body": BODY,
        },
        {
            "name": "reads a secret",
            "events": ["*"],
            "url": "https://hooks.example/catch/1/",
            "headers": {"Authorization": "Bearer {{ secrets.crm }}"},
            "body": BODY,
        },
    ]
)


def per_delivery(deliver: Callable[[], object], count: int) -> float:
    """CPU microseconds per delivery over one round (CPU time: the machine is shared)."""
    started = time.process_time()
    for _ in range(count):
        deliver()
    return (time.process_time() - started) / count * 1e6


def old_way(hook: Hook) -> Callable[[], object]:
    def deliver() -> object:
        request = render_request(hook, EVENT, delivery_id="d-1", secrets=SECRETS, now=1.0)
        return request.record(SECRETS, hook.secret_places)

    return deliver


def new_way(hook: Hook) -> Callable[[], object]:
    def deliver() -> object:
        request = render_request(hook, EVENT, delivery_id="d-1", secrets=SECRETS, now=1.0)
        return record_request(hook, EVENT, request, delivery_id="d-1", secrets=SECRETS, now=1.0)

    return deliver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| hook | exact values only (us) | masked by where read (us) |\n| --- | --- | --- |")
    for name, hook in HOOKS.items():
        old, new = float("inf"), float("inf")
        for _ in range(args.rounds):  # alternated, so that a busy moment hits both
            old = min(old, per_delivery(old_way(hook), args.deliveries))
            new = min(new, per_delivery(new_way(hook), args.deliveries))
        print(f"| {name} | {old:.1f} | {new:.1f} |")


if __name__ == "__main__":
    main()
