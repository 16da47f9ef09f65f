"""The store's console sessions, one contract on both engines: found by the hash of their token
until revoked or expired, listed most recently seen first, ended with a password change."""

from __future__ import annotations

from conftest import run

from relayhook.passwords import PASSWORD_HASH
from relayhook.store import Store
from relayhook.store.base import ConsoleSession


def session(id_: str, at: float, account: str = "admin", days: float = 7) -> ConsoleSession:
    return ConsoleSession(id_, account, at, at, at + days * 86400, "192.0.2.1", "Firefox")


def test_a_session_is_found_by_its_token_hash_until_it_ends(store: Store) -> None:
    async def main() -> None:
        await store.create_session(session("s1", 1000.0), "hash-1")
        await store.create_session(session("s2", 1001.0, days=0.001), "hash-2")  # 86 s
        assert await store.find_session("hash-1", 1002.0) == session("s1", 1000.0)
        assert await store.find_session("s1", 1002.0) is None  # by the hash, not the id
        assert (await store.find_session("hash-2", 1002.0)) is not None
        assert await store.find_session("hash-2", 1100.0) is None  # expired
        await store.touch_session("s1", 1500.0)
        await store.touch_session("s1", 1200.0)  # never moves back
        found = await store.find_session("hash-1", 1600.0)
        assert found is not None and found.last_seen_at == 1500.0
        assert await store.revoke_session("s1")
        assert not await store.revoke_session("s1")
        assert await store.find_session("hash-1", 1600.0) is None
        # a new sign-in forgets the expired ones
        await store.create_session(session("s3", 2000.0), "hash-3")
        assert [s.id for s in await store.list_sessions(None, 0.0)] == ["s3"]

    run(main())


def test_sessions_are_listed_per_account_and_a_password_change_ends_them(store: Store) -> None:
    async def main() -> None:
        for n, at in enumerate((1000.0, 1003.0, 1001.0)):
            await store.create_session(session(f"a{n}", at), f"hash-a{n}")
        await store.create_session(session("b0", 1002.0, account="ana"), "hash-b0")
        listed = await store.list_sessions("admin", 1010.0)
        assert [s.id for s in listed] == ["a1", "a2", "a0"]
        assert len(await store.list_sessions(None, 1010.0)) == 4
        ended = await store.change_secret(
            PASSWORD_HASH, "new hash", 1010.0, account="admin", keep="a2"
        )
        assert ended == 2
        assert await store.get_admin_value(PASSWORD_HASH) == "new hash"
        assert [s.id for s in await store.list_sessions(None, 1010.0)] == ["b0", "a2"]
        assert await store.revoke_sessions("ana") == 1
        assert await store.revoke_sessions("admin") == 1
        assert await store.list_sessions(None, 1010.0) == []

    run(main())
