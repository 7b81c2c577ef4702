"""The SMTP listener: aiosmtpd on the daemon's event loop, feeding the intake pipeline.

Unknown recipients are refused at RCPT, oversize mail at MAIL (SIZE) and in
DATA, any failure answers 451 so the client retries, and 250 is sent only
after the message is committed: imported (the default, and always for
`ticketd pipe`, whose exit status promises the import), or with
`smtp.spool = true` written durably to the spool (`mailgate.spool`) and
imported right after. Blocking work runs in a thread, never in a hook on
the loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from core.errors import TransientError
from core.intake import Envelope as MailEnvelope
from core.tokens import split_reply_address
from mailgate.accept import accept_message
from mailgate.app import App
from mailgate.pipe import PIPE_HELO
from mailgate.settings import Settings
from mailgate.spool_importer import SpoolImporter

log = logging.getLogger(__name__)
# aiosmtpd logs every command and connection at INFO: keep it to warnings.
logging.getLogger("mail.log").setLevel(logging.WARNING)
SHUTDOWN_GRACE = 30.0
TEMPORARY = "451 4.3.0 Temporary failure, please try again later"
TOO_BIG = "552 5.3.4 Message too big for this system"


class IntakeHandler:
    """aiosmtpd hooks: accept department recipients, make DATA durable before 250."""

    def __init__(self, app: App, spool: SpoolImporter | None) -> None:
        self.app = app
        self.spool = spool
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        base, _ = split_reply_address(address.lower())
        if self.app.policy.department_for(base) is None:
            return f"550 5.1.1 <{address}>: no such department address here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            return TEMPORARY
        transport = "pipe" if session.host_name == PIPE_HELO else "smtp"
        sender = envelope.mail_from or None
        mail_envelope = MailEnvelope(transport, sender, tuple(envelope.rcpt_tos))
        self.in_flight += 1
        self.idle.clear()
        try:
            if self.spool is not None and transport == "smtp":
                return await self._spooled(raw, mail_envelope, self.spool)
            decision = await asyncio.to_thread(accept_message, self.app, raw, mail_envelope)
        except (TransientError, OSError) as err:
            log.warning("temporary failure from %s: %s", session.peer, err)
            return TEMPORARY
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        return f"250 2.0.0 OK: import {decision.import_id}"

    async def _spooled(self, raw: bytes, envelope: MailEnvelope, spool: SpoolImporter) -> str:
        refusal = await spool.refusal()
        if refusal is not None:
            log.warning("answering 451: %s", refusal)
            return TEMPORARY
        name = await spool.put(raw, envelope)
        return f"250 2.0.0 OK: queued as {name}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session failed: %s: %s", type(error).__name__, error)
        return TEMPORARY


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with long lines accepted, enhanced size codes and a session cap."""

    def __init__(
        self, handler: IntakeHandler, sessions: set[IntakeSMTP], cap: int, **kwargs: Any
    ) -> None:
        self.line_length_limit = max(kwargs.get("data_size_limit") or 0, 1 << 20) + 1024
        super().__init__(handler, **kwargs)
        self._sessions = sessions
        self._cap = cap
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and len(self._sessions) >= self._cap:
            self._refused = True
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        self._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._sessions.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith("552 Error"):
            await super().push(TOO_BIG)
        else:
            await super().push(status)


class Listener:
    """A running SMTP server and what graceful shutdown needs."""

    def __init__(
        self, server: asyncio.Server, handler: IntakeHandler, sessions: set[IntakeSMTP]
    ) -> None:
        self.server = server
        self.handler = handler
        self.sessions = sessions
        if handler.spool is not None:
            handler.spool.start()

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def reload(self, settings: Settings) -> None:
        """Hand reloaded settings to the spool worker (the handler reads `app` itself)."""
        if self.handler.spool is not None:
            self.handler.spool.reload(settings)

    async def close(self) -> None:
        """Stop accepting, let messages in flight commit, then close idle sessions."""
        self.server.close()
        try:
            await asyncio.wait_for(self.handler.idle.wait(), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("closing with %d message(s) still in flight", self.handler.in_flight)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        await self.server.wait_closed()
        if self.handler.spool is not None:
            await self.handler.spool.close(SHUTDOWN_GRACE)


def _tls_context(app: App) -> ssl.SSLContext | None:
    smtp = app.settings.smtp
    if not smtp.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(smtp.tls_cert, smtp.tls_key or None)
    return context


async def start_listener(app: App, host: str | None = None, port: int | None = None) -> Listener:
    """Listen on the configured address (or the one given, 0 for a free port)."""
    conf_host, conf_port = app.settings.smtp.host_port
    handler = IntakeHandler(app, SpoolImporter(app) if app.settings.smtp.spool else None)
    sessions: set[IntakeSMTP] = set()
    tls = _tls_context(app)
    limit = app.settings.smtp.max_message_bytes

    def factory() -> IntakeSMTP:
        return IntakeSMTP(
            handler,
            sessions,
            app.settings.smtp.max_sessions,
            data_size_limit=limit,
            decode_data=False,
            tls_context=tls,
            require_starttls=False,
            hostname=None,
            ident="ticketd ESMTP",
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host or conf_host, conf_port if port is None else port
    )
    listener = Listener(server, handler, sessions)
    log.info("SMTP listening on %s:%d", host or conf_host, listener.port)
    return listener
