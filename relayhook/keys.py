"""Rotating the key that seals secrets at rest (`relayhook keys rotate`), while servers run.

With the key file (the default; `relayhook.db.key` beside an SQLite database):

    1. a new key goes first in the file, the old one stays after it: every process reads the
       file again when it changes, seals with the new key and still opens with both;
    2. after `grace` seconds, every stored secret (run-time relays and hooks) is sealed again
       with the new key, in small transactions (a value changed meanwhile keeps its change);
    3. after `grace` more (every process has read the values sealed anew), the old key leaves
       the file: values sealed with it no longer open.

Killed at any point, the file still holds a ring that opens everything stored; run it again and
it finishes that rotation (a ring of two keys is a rotation under way). With a configured key
([secrets] key / RELAYHOOK_SECRET_KEY), the new key and the previous one are set in every
process (`[secrets] previous_key` / RELAYHOOK_PREVIOUS_SECRET_KEY) and step 2 is all it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relayhook.sealing import Sealer, SealError, new_key, read_key_file, write_key_file
from relayhook.store import Resealed, Store

Kind = Literal["relay", "hook"]
MAX_PASSES = 10  # a pass finding values sealed with an old key means a process sealed meanwhile


@dataclass
class Rotation:
    """What a rotation did."""

    resealed: int = 0
    made_key: bool = False  # a new key was made (not a rotation taken up again)
    dropped: int = 0  # old keys removed from the key file


async def reseal_all(
    store: Store, sealer: Sealer, *, batch: int = 100, progress: Callable[[int], None] | None = None
) -> int:
    """Seal every stored secret that is not sealed with `sealer`'s current key again with it;
    how many were. SealError naming each value that no key of the ring opens (then nothing
    more is written: those need the key that sealed them).

    The batches leave the config version alone (each move makes every process open every
    relay again: with thousands, a pause in answering requests); it moves once at the end."""
    done = 0
    for _ in range(MAX_PASSES):
        stale = await _stale(store, sealer)
        if not stale:
            if done:
                await store.reseal([], bump=True)  # every process reads the new values
            return done
        unreadable = [
            f"{kind} {name!r}" for kind, name, sealed in stale if not _opens(sealer, sealed)
        ]
        if unreadable:
            raise SealError(
                "no key of the ring opens the sealed secrets of"
                f" {', '.join(unreadable)}: set the key that sealed them as the"
                " previous key"
            )
        size = max(batch, 1)
        for chunk in (stale[i : i + size] for i in range(0, len(stale), size)):
            changes = [
                Resealed(kind, name, sealed, sealer.reseal(sealed)) for kind, name, sealed in chunk
            ]
            done += await store.reseal(changes)
            if progress is not None:
                progress(done)
    raise SealError(
        f"secrets were still being sealed with an old key after {MAX_PASSES}"
        " passes: is a process running with another key?"
    )


async def rotate_key_file(
    store: Store,
    path: Path,
    *,
    grace: float,
    batch: int = 100,
    progress: Callable[[int], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> Rotation:
    """The three steps of the module's docstring on the key file `path`."""
    say = announce or (lambda message: None)
    rotation = Rotation()
    keys = read_key_file(path)
    if len(keys) == 1:
        write_key_file(path, [new_key(), *keys])
        rotation.made_key = True
        say(f"made a new key in {path}; the old one still opens secrets until the end")
    else:
        say(f"{path} holds {len(keys)} keys: finishing the rotation under way")
    await asyncio.sleep(grace)  # every process seals with the new key before the first pass
    sealer = Sealer.from_key_file(path)
    rotation.resealed = await reseal_all(store, sealer, batch=batch, progress=progress)
    await asyncio.sleep(grace)  # every process has read the values sealed again
    rotation.resealed += await reseal_all(store, sealer, batch=batch, progress=progress)
    current, *old = read_key_file(path)
    write_key_file(path, [current])
    rotation.dropped = len(old)
    await store.reseal([], bump=True)  # every process reads them again, with the new ring
    return rotation


async def _stale(store: Store, sealer: Sealer) -> list[tuple[Kind, str, str]]:
    found: list[tuple[Kind, str, str]] = [
        ("relay", relay.name, relay.sealed) for relay in await store.list_relays()
    ]
    found += [("hook", hook.name, hook.sealed) for hook in await store.list_hooks() if hook.sealed]
    return [(kind, name, sealed) for kind, name, sealed in found if not sealer.is_current(sealed)]


def _opens(sealer: Sealer, sealed: str) -> bool:
    try:
        sealer.open(sealed)
    except SealError:
        return False
    return True
