"""A small OpenID Connect provider for the tests, on 127.0.0.1 (no outside network).

    with OidcProvider(client_id="relayhook", client_secret="s3cret") as provider:
        provider.user = {"email": "ana@example.com", "email_verified": True, "name": "Ana"}
        ... provider.url is the issuer ...

/authorize signs `user` in at once (no login page) and redirects back with a code; /token
checks the client, the code, its redirect_uri and the PKCE verifier, and answers an ID token
signed RS256 with a key made for this run, carrying the nonce it was given; /jwks shows the
public key. `tamper` makes it sign with another key (a forged token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey


class OidcProvider:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, private=True, parameters={"kid": "test-key"})
        self.other_key = RSAKey.generate_key(2048, private=True, parameters={"kid": "test-key"})
        self.user: dict[str, Any] = {}
        self.tamper = False
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": self.client_id,
            "sub": self.user.get("email", "x"),
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            **self.user,
        }
        key = self.other_key if self.tamper else self.key
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, key)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(
            self, status: int, body: dict[str, Any] | None = None, location: str | None = None
        ) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self.answer(
                    200,
                    {
                        "issuer": provider.url,
                        "authorization_endpoint": provider.url + "/authorize",
                        "token_endpoint": provider.url + "/token",
                        "jwks_uri": provider.url + "/jwks",
                        "response_types_supported": ["code"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    },
                )
            elif url.path == "/jwks":
                self.answer(200, {"keys": [provider.key.as_dict(private=False)]})
            elif url.path == "/authorize":
                if query.get("client_id") != provider.client_id:
                    self.answer(400, {"error": "unauthorized_client"})
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = query
                back = urlencode({"code": code, "state": query["state"]})
                self.answer(302, location=f"{query['redirect_uri']}?{back}")
            else:
                self.answer(404)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            provider.token_requests += 1
            asked = provider.codes.pop(form.get("code", ""), None)
            challenge = (
                base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                )
                .rstrip(b"=")
                .decode()
            )
            if (
                asked is None
                or form.get("client_secret") != provider.client_secret
                or form.get("redirect_uri") != asked["redirect_uri"]
                or challenge != asked.get("code_challenge")
            ):
                self.answer(400, {"error": "invalid_grant"})
                return
            self.answer(
                200,
                {
                    "access_token": "at",
                    "token_type": "Bearer",
                    "id_token": provider.id_token(asked["nonce"]),
                },
            )

    return Handler
