"""E-mail alerts (`[alerts.email]`): one plain-text message per alert, sent through the user's
SMTP server with the standard library's smtplib, in a thread.

    Subject: Relayhook: hook 'hubspot' failing: status 401

    hook 'hubspot': status 401 since 2026-12-01 09:12 UTC, 3 deliveries
    ...

smtplib, not aiosmtplib: an alert is rare and small, a thread per send costs nothing that
matters, and the standard library adds no dependency. Its `timeout` bounds every step (connect,
each command), so a silent server holds a thread at most that long per step. The password goes
to the server only; an error names the server and what it answered, never the password.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import quote

from relayhook.core.problems import alert_kind, alert_text
from relayhook.core.records import Problem
from relayhook.core.redaction import REDACTED

SUBJECTS = {
    "problem.opened": "Relayhook: hook {hook!r} failing: {signature}",
    "hook.will_deactivate": "Relayhook: hook {hook!r} will be deactivated after one more dead"
    " delivery",
    "hook.deactivated": "Relayhook: hook {hook!r} deactivated",
    "relay.problem": "Relayhook: relay {relay!r}: {signature}",
}


class MailError(Exception):
    """Sending failed; the message says why, without the password."""


@dataclass(frozen=True)
class Mailer:
    """The SMTP server, who sends and who gets alerts (relayhook.settings.EmailAlertSettings)."""

    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    username: str = ""
    password: str = ""
    tls: str = "starttls"  # starttls | ssl | none
    timeout: float = 10.0
    console_url: str | None = None  # links to the hook's page in the console when known

    def __repr__(self) -> str:  # never the password
        return f"Mailer({self.host}:{self.port}, tls={self.tls}, to={list(self.to)})"

    def message(self, problem: Problem) -> EmailMessage:
        """The alert about a newly opened problem, as an e-mail."""
        message = EmailMessage()
        subject = SUBJECTS[alert_kind(problem.signature, problem.relay)]
        message["Subject"] = subject.format(
            hook=problem.hook, relay=problem.relay, signature=problem.signature
        )
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid("relayhook", parseaddr(self.sender)[1].split("@")[-1])
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        message.set_content(self.body(problem))
        return message

    def body(self, problem: Problem) -> str:
        if problem.relay:
            lines = [
                alert_text(problem),
                "",
                f"Relay:       {problem.relay}",
                f"Problem:     {problem.signature} ({problem.status})",
            ]
        else:
            lines = [
                alert_text(problem),
                "",
                f"Hook:        {problem.hook}",
                f"Problem:     {problem.signature} ({problem.status})",
                f"Deliveries:  {problem.deliveries}",
            ]
        if problem.error and not problem.relay:
            lines.append(f"Last error:  {problem.error}")
        if problem.request:
            lines.append(f"Request:     {problem.request}")
        lines.append(f"Problem id:  {problem.id}")
        if self.console_url:
            page = (
                f"relays/{quote(problem.relay, safe='')}"
                if problem.relay
                else f"hooks/{quote(problem.hook, safe='')}"
            )
            lines += ["", f"In the console: {self.console_url.rstrip('/')}/{page}"]
        return "\n".join(lines) + "\n"

    def send(self, message: EmailMessage) -> None:
        """Send one message (blocking: run it in a thread). MailError says why it failed."""
        try:
            self._send(message)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            text = f"{type(exc).__name__}: {exc}"
            if self.password:
                text = text.replace(self.password, REDACTED)
            raise MailError(f"{self.host}:{self.port}: {text}") from None

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.tls == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.tls == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)
