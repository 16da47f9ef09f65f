"""`relayhook keys`: the key that seals secrets at rest.

    relayhook keys rotate [--grace S]    seal every stored secret with a new key, while serving
    relayhook keys new                   print a new random key (for [secrets] key)

See relayhook.keys for the steps and what a kill midway leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any, TextIO

from relayhook.cli.common import add_config_flag, settings_of
from relayhook.sealing import Sealer, new_key
from relayhook.settings import Settings

# Tests only: SIGKILL this process once this many secrets are sealed again (a crash midway).
KILL_AFTER = "RELAYHOOK_TEST_KILL_AFTER_RESEALED"


async def rotate(settings: Settings, out: TextIO, *, grace: float, batch: int) -> int:
    from relayhook.assembly import key_file, opened_store
    from relayhook.keys import reseal_all, rotate_key_file

    kill_after = os.environ.get(KILL_AFTER)

    def progress(done: int) -> None:
        print(f"sealed again: {done}", file=out, flush=True)
        if kill_after is not None and done >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    keys = settings.sealing_keys()
    path = key_file(settings)
    if not keys and not path.is_file():
        say(f"no key to rotate: nothing is configured and there is no key file at {path}")
        return 1
    async with opened_store(settings) as store:
        if keys:
            done = await reseal_all(store, Sealer.from_keys(keys), batch=batch, progress=progress)
            say(
                f"{done} stored secrets sealed again with the configured key ([secrets] key /"
                " RELAYHOOK_SECRET_KEY); every stored secret is now sealed with it."
            )
            if len(keys) > 1:
                say(
                    "Remove the previous key ([secrets] previous_key /"
                    " RELAYHOOK_PREVIOUS_SECRET_KEY) from every process and restart them."
                )
            else:
                say(
                    "To change a configured key: set the new one as the key and the old one as"
                    " the previous key in every process, restart them, run this again."
                )
            return 0
        rotation = await rotate_key_file(
            store, path, grace=grace, batch=batch, progress=progress, announce=say
        )
    say(
        f"{rotation.resealed} stored secrets sealed again with the new key; the old key is"
        f" gone from {path}. Back the key file up with the database."
    )
    return 0


def cmd_rotate(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(rotate(settings_of(args), out, grace=args.grace, batch=args.batch))


def cmd_new(args: argparse.Namespace, out: TextIO) -> int:
    print(new_key(), file=out)
    return 0


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="the key that seals secrets at rest")
    actions = keys.add_subparsers(dest="action", required=True)
    rotate_cmd = actions.add_parser(
        "rotate", help="seal every stored secret with a new key, while relayhook serve runs"
    )
    add_config_flag(rotate_cmd)
    rotate_cmd.add_argument(
        "--grace",
        type=float,
        default=3.0,
        help="seconds every running process gets to follow each step (default: 3)",
    )
    rotate_cmd.add_argument(
        "--batch", type=int, default=100, help="secrets sealed again per transaction (default: 100)"
    )
    rotate_cmd.set_defaults(func=cmd_rotate)
    fresh = actions.add_parser("new", help="print a new random key")
    fresh.set_defaults(func=cmd_new)
