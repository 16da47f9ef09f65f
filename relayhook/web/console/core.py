"""The console's shared state: what every view gets as its first argument."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from relayhook.assembly import Parts
from relayhook.core.clients import TrustedProxies
from relayhook.core.connectors import Connector
from relayhook.passwords import ensure_password
from relayhook.people import People
from relayhook.relays import Relay
from relayhook.settings import Settings
from relayhook.web.console.oidc import Provider
from relayhook.web.console.pages import Ctx, Form, NotFound, Pages, make_environment
from relayhook.web.console.session import Gate

log = logging.getLogger("relayhook.console")


@dataclass
class Console:
    """What the console's views share: the running parts, the settings and the clock."""

    parts: Parts
    clock: Callable[[], datetime]
    new_id: Callable[[], str]
    people: People
    gate: Gate = field(init=False)
    pages: Pages = field(init=False)
    oidc: Provider | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        secure = self.settings.public_url().startswith("https:")
        proxies = TrustedProxies.from_config(self.settings.server.forwarded_allow_ips)
        self.gate = Gate(
            self.parts.store, secure=secure, clock=self.now, new_id=self.new_id, proxies=proxies
        )
        oidc = self.settings.auth.oidc
        if oidc.enabled:
            self.oidc = Provider(
                oidc, self.settings.public_url().rstrip("/") + "/signin/oidc/callback"
            )
        self.pages = Pages(
            self.gate,
            make_environment(),
            {"product": "Relayhook", "oidc": oidc.name if oidc.enabled else ""},
        )

    @property
    def settings(self) -> Settings:
        return self.parts.settings

    @property
    def connectors(self) -> dict[str, Connector]:
        return self.parts.connectors

    def now(self) -> float:
        return self.clock().timestamp()

    def relay_named(self, name: str) -> Relay:
        relay = self.parts.live.relay_named(name)
        if relay is None:
            raise NotFound(f"There is no relay named {name!r}.")
        return relay

    async def forbidden(self, request: Request, message: str) -> Response:
        """The page for a role too low (a forged form post gets it too)."""
        session = await self.gate.read(request)
        ctx = Ctx(request, session, Form(), self.pages.env, self.pages.globals)
        response = ctx.render("error.html", 403, title="Not allowed", message=message)
        return await self.pages.finish(session, response)

    async def start(self) -> None:
        """At start (the app's lifespan): the session key, and a password if none is set."""
        await self.gate.start()
        await self.people.ensure_admin()
        password = await ensure_password(self.parts.store, self.now())
        if password is not None:
            log.warning(
                "console: no admin password was set; made one up: %s (shown once; "
                "`relayhook admin password` sets another)",
                password,
            )
