"""A real SMTP server on 127.0.0.1 for the e-mail alert tests (aiosmtpd, in its own thread):
it records every message it accepts and every login (one but `login` is refused).

    with SmtpServer(login=("relayhook", "pw")) as smtp:
        ... smtp.port ...
        [message] = smtp.wait_for(1, timeout=10)
        message["Subject"], message.get_content()
"""

from __future__ import annotations

import email.policy
import threading
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from servers import HOST, free_port, wait_until


class SmtpServer:
    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.login = login
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self._lock = threading.Lock()
        # AUTH offered over plain SMTP (on 127.0.0.1 only); not required, which aiosmtpd
        # warns about without TLS: a client that logs in is checked all the same.
        self._controller = Controller(
            self,
            hostname=HOST,
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
        )

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        parsed = BytesParser(policy=email.policy.default).parsebytes(content)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        return "250 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        user = password = ""
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
        accepted = self.login is not None and (user, password) == self.login
        with self._lock:
            self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False)

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float) -> list[EmailMessage]:
        """The first `count` messages, once that many arrived (TimeoutError at the deadline)."""
        found: list[EmailMessage] = wait_until(
            lambda: len(self.received()) >= count and self.received()[:count],
            timeout=timeout,
            what=f"{count} e-mail(s)",
        )
        return found
