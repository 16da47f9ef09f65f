"""The store contract for people, one-time links, API keys and the audit log (issue 20), run
against both engines."""

from __future__ import annotations

from conftest import run

from relayhook.core.people import Account, ApiKey, AuditEntry
from relayhook.store.base import ConsoleSession, Store

NOW = 1_800_000_000.0


def test_accounts_are_saved_found_by_email_in_any_case_and_end_their_sessions(store: Store) -> None:
    ana = Account("a1", "Ana", "Ana@Example.com", "operator", NOW, "hash")
    run(store.save_account(ana))
    assert run(store.find_account("ana@example.COM")) == ana
    assert run(store.get_account("a1")) == ana and run(store.get_account("nobody")) is None
    for n in range(2):
        run(
            store.create_session(
                ConsoleSession(f"s{n}", "a1", NOW, NOW, NOW + 60, "::1", "x"), f"hash{n}"
            )
        )
    disabled = Account("a1", "Ana", "Ana@Example.com", "operator", NOW, "hash", NOW + 1)
    assert run(store.save_account(disabled, end_sessions=True, keep="s1")) == 1
    assert [s.id for s in run(store.list_sessions("a1", NOW))] == ["s1"]
    assert run(store.list_accounts()) == [disabled]


def test_a_link_is_used_once_and_not_after_it_expired(store: Store) -> None:
    run(store.create_link("h1", "a1", NOW + 10))
    run(store.create_link("h2", "a1", NOW + 10))
    assert run(store.peek_link("h1", NOW)) == "a1"
    assert run(store.use_link("h1", NOW)) == "a1"
    assert run(store.use_link("h1", NOW)) is None and run(store.peek_link("h1", NOW)) is None
    assert run(store.use_link("h2", NOW + 11)) is None
    assert run(store.use_link("never", NOW)) is None


def test_keys_are_found_by_hash_revoked_once_and_touched_forward(store: Store) -> None:
    key = ApiKey("k1", "CI", "editor", "person:admin", NOW, NOW + 100, ("vr",), ("crm", "b"))
    run(store.create_key(key, "tokenhash"))
    assert run(store.find_key("tokenhash")) == key and run(store.find_key("other")) is None
    run(store.touch_key("k1", NOW + 5))
    run(store.touch_key("k1", NOW + 2))  # never back
    assert run(store.find_key("tokenhash")).last_used_at == NOW + 5  # type: ignore[union-attr]
    assert run(store.revoke_key("k1", NOW + 6)) and not run(store.revoke_key("k1", NOW + 7))
    [listed] = run(store.list_keys())
    assert listed.revoked_at == NOW + 6 and not listed.usable(NOW + 7)


def test_the_audit_log_is_appended_filtered_paged_and_pruned(store: Store) -> None:
    for n, (action, actor) in enumerate(
        [
            ("hooks.update", "person:a1"),
            ("hooks.replay", "key:k1"),
            ("signin.failure", "anonymous"),
            ("hookshot", "person:a1"),
        ]
    ):
        run(
            store.append_audit(
                AuditEntry(
                    NOW + n,
                    actor,
                    actor.split(":")[-1],
                    "::1",
                    action,
                    "hook:crm" if n < 2 else "",
                    {"n": n},
                )
            )
        )
    lines = run(store.list_audit())
    assert [e.action for e in lines] == [
        "hookshot",
        "signin.failure",
        "hooks.replay",
        "hooks.update",
    ]
    assert lines[-1].detail == {"n": 0} and lines[0].id > lines[-1].id
    assert [e.action for e in run(store.list_audit(action="hooks"))] == [
        "hooks.replay",
        "hooks.update",
    ]  # by prefix, not hookshot
    assert len(run(store.list_audit(actor="a1"))) == 2  # by name too
    assert len(run(store.list_audit(target="hook:crm", since=NOW + 1))) == 1
    page = run(store.list_audit(limit=2))
    assert [e.action for e in run(store.list_audit(before=page[-1].id))] == [
        "hooks.replay",
        "hooks.update",
    ]
    assert run(store.prune_audit(NOW + 2)) == 2
    assert len(run(store.list_audit())) == 2


def test_retention_keeps_the_audit_log_longer_than_the_history(store: Store) -> None:
    from relayhook.assembly import prune_now
    from relayhook.settings import RetentionSettings

    day = 86400.0
    for age in (500, 100, 10):
        run(store.append_audit(AuditEntry(NOW - age * day, "person:a", "a", "::1", "x")))
    assert RetentionSettings().audit_days == 400 > RetentionSettings().days
    run(prune_now(store, RetentionSettings(), NOW))  # history 30 days, the audit log 400
    assert len(run(store.list_audit())) == 2
    run(prune_now(store, RetentionSettings(audit_days=0), NOW))  # 0: kept forever
    assert len(run(store.list_audit())) == 2
    run(prune_now(store, RetentionSettings(audit_days=50), NOW))
    assert len(run(store.list_audit())) == 1
