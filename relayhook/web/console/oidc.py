"""Sign-in with an OpenID Connect provider (`[auth.oidc]`): the authorization code flow with
PKCE, a state and a nonce kept in the signed session cookie, the ID token checked with joserfc
against the provider's keys (algorithm, key id, issuer, audience, expiry, nonce).

    GET /signin/oidc?next=/hooks       -> 303 to the provider's authorization endpoint
    GET /signin/oidc/callback?code&state  -> a session for the person with that verified e-mail

Someone new (an e-mail no account has) gets an account with `[auth.oidc] role`; a disabled
account stays out; an e-mail outside `allowed_domains`, or one the provider does not say is
verified, is refused. Every outcome is in the audit log (signin.success / signin.failure, via
oidc).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from starlette.responses import RedirectResponse, Response

from relayhook.settings import OidcSettings
from relayhook.web.console.pages import Ctx

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

log = logging.getLogger("relayhook.oidc")
DISCOVERY_SECONDS = 3600.0  # the provider's configuration and keys are read again after this
TIMEOUT = 10.0
ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]  # never "none", never HS* with a public key


class SignInRefused(Exception):
    """The provider's answer does not let this person in; the message is for them."""


class Provider:
    """The provider's configuration and keys (cached), and the checks of what it sends."""

    def __init__(
        self,
        settings: OidcSettings,
        redirect_uri: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings, self.redirect_uri, self.transport = settings, redirect_uri, transport
        self._meta: tuple[float, dict[str, Any], KeySet] | None = None

    async def metadata(self) -> tuple[dict[str, Any], KeySet]:
        if self._meta is None or time.monotonic() - self._meta[0] > DISCOVERY_SECONDS:
            issuer = self.settings.issuer.rstrip("/")
            async with self._client() as client:
                meta = (await client.get(f"{issuer}/.well-known/openid-configuration")).json()
                keys = KeySet.import_key_set((await client.get(meta["jwks_uri"])).json())
            self._meta = (time.monotonic(), meta, keys)
        return self._meta[1], self._meta[2]

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, timeout=TIMEOUT, follow_redirects=False)

    async def authorize_url(self, state: str, nonce: str, verifier: str) -> str:
        meta, _ = await self.metadata()
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": "openid email profile",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{meta['authorization_endpoint']}?{query}"

    async def email_of(self, code: str, verifier: str, nonce: str) -> tuple[str, str]:
        """The verified e-mail and name the provider vouches for, from the code it gave."""
        meta, keys = await self.metadata()
        async with self._client() as client:
            answer = await client.post(
                meta["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": verifier,
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret.get_secret_value(),
                },
            )
        if answer.status_code != 200 or "id_token" not in answer.json():
            raise SignInRefused("The sign-in provider did not confirm who you are. Try again.")
        try:
            token = jwt.decode(answer.json()["id_token"], keys, algorithms=ALGORITHMS)
            JWTClaimsRegistry(
                iss={"essential": True, "value": self.settings.issuer.rstrip("/")},
                aud={"essential": True, "value": self.settings.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            log.warning("oidc: refused an ID token: %s", exc)
            raise SignInRefused("The sign-in provider's answer could not be verified.") from None
        return self.check_email(token.claims)

    def check_email(self, claims: dict[str, Any]) -> tuple[str, str]:
        email = claims.get("email")
        verified = claims.get("email_verified") is True
        if not isinstance(email, str) or "@" not in email or not verified:
            raise SignInRefused("Your account at the sign-in provider has no verified e-mail.")
        domain = email.rsplit("@", 1)[1].lower()
        allowed = [d.lower().lstrip("@") for d in self.settings.allowed_domains]
        if allowed and domain not in allowed:
            raise SignInRefused(f"People with an e-mail at {domain} cannot sign in here.")
        name = claims.get("name")
        return email, name if isinstance(name, str) and name.strip() else email.split("@")[0]


async def start(console: Console, ctx: Ctx) -> Response:
    provider = console.oidc
    if provider is None:
        return ctx.redirect("/signin")
    target = _target(ctx.request.query_params.get("next", "/"))
    state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
    try:
        url = await provider.authorize_url(state, nonce, verifier)
    except (httpx.HTTPError, ValueError, KeyError):
        log.exception("oidc: cannot read the provider's configuration")
        return ctx.redirect(
            "/signin",
            "The sign-in provider cannot be reached just now. Try "
            "again in a minute, or sign in with your password.",
        )
    ctx.session.data["oidc"] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": target,
    }
    ctx.session.changed = True
    return RedirectResponse(url, 303)


async def callback(console: Console, ctx: Ctx) -> Response:
    provider, query = console.oidc, ctx.request.query_params
    pending = ctx.session.data.pop("oidc", None)
    ctx.session.changed = True
    address = console.gate.address_of(ctx.request)
    if provider is None or not isinstance(pending, dict):
        return ctx.redirect("/signin", "That sign-in had expired. Try again.")
    given = query.get("state", "")
    if not secrets.compare_digest(given.encode(), str(pending.get("state")).encode()):
        return ctx.redirect("/signin", "That sign-in had expired. Try again.")
    try:
        if "code" not in query:
            raise SignInRefused("The sign-in provider did not let you in.")
        email, name = await provider.email_of(query["code"], pending["verifier"], pending["nonce"])
        account = await console.people.store.find_account(email)
        if account is None:
            account = await console.people.add(name, email, provider.settings.role, origin="oidc")
        if not account.active:
            raise SignInRefused("Your account is disabled. Ask an admin.")
    except SignInRefused as exc:
        await console.people.record(
            None, address, "signin.failure", "", {"via": "oidc", "reason": str(exc)}
        )
        return ctx.redirect("/signin", str(exc))
    except (httpx.HTTPError, ValueError, KeyError):
        log.exception("oidc: the sign-in failed")
        return ctx.redirect("/signin", "The sign-in provider cannot be reached just now.")
    await console.gate.sign_in(ctx.session, ctx.request, account.id)
    who = await console.people.principal_of_account(account.id)
    await console.people.record(
        who, address, "signin.success", f"people:{account.id}", {"via": "oidc"}
    )
    return RedirectResponse(_target(str(pending.get("next", "/"))), 303)


def _target(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


ROUTES = [
    ("/signin/oidc", start, ["GET"]),
    ("/signin/oidc/callback", callback, ["GET"]),
]
