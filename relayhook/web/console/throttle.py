"""Holding back password guessing without locking the admin out, and without starving ingest.

    guard = SignInGuard(clock)
    refused = guard.refusal(address, account, device)   # (seconds, message) or None
    matched = await guard.verify(password_matches, stored, given)   # None: too busy now

Three counts of wrong passwords, each over THROTTLE_WINDOW:
- per address (an IPv6 address by its /64), from browsers new to the account: FAILURES_ALLOWED,
  then 429 for that address only;
- per account, from browsers new to it: ACCOUNT_FAILURES, then 429 for such browsers (a
  guessing attack spread over many addresses);
- per known browser (the device cookie a successful sign-in leaves): FAILURES_ALLOWED.
A browser that signed in to the account before is held back by its own count only, not by its
address's nor the account's, so an attacker, from one address or many, even from the admin's
own address (behind a proxy that is not in `forwarded_allow_ips` every client shares one), cannot
lock the admin out of a browser they used: OWASP's "device cookies". A browser new to the
account waits out an attack's window (or the admin signs in from a browser used before). Counts
are per process (a scale-out multiplies them).

Every argon2 verification runs on a thread of its own pool (ARGON2_SLOTS at once, at most
ARGON2_WAITING waiting, else "busy") at the lowest CPU priority (nice 19, Linux): one argon2id
verification is 4 lanes on 4 threads, 64 MiB, ~0.2-0.5 s of every core here, and at normal
priority a few of them in a row held the relays' requests for seconds (bench/signin_attack.py).
The threads libargon2 starts inherit that priority, so the event loop answering relays
preempts them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from relayhook.core.clients import address_key

FAILURES_ALLOWED = 5  # per address (and per known browser) within THROTTLE_WINDOW
ACCOUNT_FAILURES = 20  # per account, from browsers new to it, within THROTTLE_WINDOW
THROTTLE_WINDOW = 60.0
THROTTLE_KEYS = 10_000  # addresses (browsers, accounts) remembered at most; oldest forgotten
ARGON2_SLOTS = 1  # password verifications at once, in this process
ARGON2_WAITING = 8  # more than this waiting: answered "busy" at once, no verification
ARGON2_NICE = 19
T = TypeVar("T")


def lowest_priority() -> None:
    """Make the calling thread (and the threads it starts) yield the CPU to any other: on Linux
    a thread's nice value is its own. Elsewhere (where it would renice the whole process)
    nothing is changed."""
    if sys.platform == "linux":
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ARGON2_NICE)
        except OSError:
            pass  # not allowed here: the pool's bound still holds


class Throttle:
    """Failed sign-ins per key: after `allowed` within the window, `retry_after` gives the
    seconds until the oldest of them leaves it. `clock` is injected."""

    def __init__(
        self,
        clock: Callable[[], float],
        allowed: int = FAILURES_ALLOWED,
        window: float = THROTTLE_WINDOW,
    ) -> None:
        self.clock, self.allowed, self.window = clock, allowed, window
        self._failures: dict[str, list[float]] = {}

    def retry_after(self, key: str) -> int | None:
        now = self.clock()
        recent = [t for t in self._failures.get(key, []) if t > now - self.window]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        if len(recent) < self.allowed:
            return None
        return max(1, int(recent[-self.allowed] + self.window - now + 0.999))

    def fail(self, key: str) -> None:
        if key not in self._failures and len(self._failures) >= THROTTLE_KEYS:
            del self._failures[next(iter(self._failures))]  # bounded: forget the oldest
        self._failures.setdefault(key, []).append(self.clock())
        del self._failures[key][: -self.allowed]  # only the newest few matter

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class SignInGuard:
    """The three throttles and the semaphore around argon2 (see the module's docstring)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        slots: int = ARGON2_SLOTS,
        waiting: int = ARGON2_WAITING,
    ) -> None:
        self.by_address = Throttle(clock)
        self.by_device = Throttle(clock)
        self.by_account = Throttle(clock, allowed=ACCOUNT_FAILURES)
        self._pool = ThreadPoolExecutor(
            slots, thread_name_prefix="argon2", initializer=lowest_priority
        )
        self._waiting = 0
        self.max_waiting = waiting

    def refusal(self, address: str, account: str, device: str | None) -> tuple[int, str] | None:
        """(seconds to wait, what to tell the person) while a count is full; else None."""
        if device is not None:  # a browser that signed in before: only its own count
            wait = self.by_device.retry_after(device)
        else:
            wait = self.by_address.retry_after(address_key(address))
        if wait is not None:
            return wait, f"Too many wrong passwords. Try again in {wait} seconds."
        wait = None if device is not None else self.by_account.retry_after(account)
        if wait is not None:
            return wait, (
                f"Too many wrong passwords for this account from new browsers. Try "
                f"again in {wait} seconds, or sign in from a browser you used before."
            )
        return None

    def failed(self, address: str, account: str, device: str | None) -> None:
        if device is not None:
            self.by_device.fail(device)
        else:
            self.by_address.fail(address_key(address))
            self.by_account.fail(account)

    def succeeded(self, address: str, device: str | None) -> None:
        self.by_address.forget(address_key(address))
        if device is not None:
            self.by_device.forget(device)

    async def verify(self, check: Callable[..., T], *args: object) -> T | None:
        """`check(*args)` on the pool's low-priority threads, at most `slots` at once; None
        (nothing run) when `max_waiting` already wait."""
        if self._waiting >= self.max_waiting:
            return None
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, partial(check, *args))
        finally:
            self._waiting -= 1
