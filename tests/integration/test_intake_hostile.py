"""Mangled messages through the whole intake: each ends as a ticket or an import-log
entry, and no exception escapes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.intake import Envelope
from mailgate.accept import accept_message

HEADERS = st.sampled_from(
    [
        b"Subject: =?utf-8?q?a=0D=0ABcc:_x@evil.test?=",
        b"Subject: =?x-unknown?b?////?=",
        b"From: =?utf-8?b?\xff\xfe?= <a@b.test>",
        b"From: <>",
        b"From: dana@client.test",
        b"Content-Type: text/plain; charset=klingon",
        b"Content-Type: multipart/mixed; boundary=",
        b'Content-Type: multipart/mixed; boundary="zz"',
        b"Content-Transfer-Encoding: base64",
        b"Message-ID: <<<>>>",
        b"In-Reply-To: <a@b> <c@d",
        b"Date: 99 Foo 20000 99:99:99",
        b"X-Long: " + b"x" * 5000,
        b"Subject: \xe9t\xe9 8-bit",
    ]
)
BODIES = st.one_of(
    st.binary(max_size=400),
    st.sampled_from(
        [
            b"--zz\r\nContent-Type: text/html\r\n\r\n<p>hi<script>x</script>\r\n",
            b"--zz\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\nJVBERi0x",
            b"--zz\r\nContent-Type: message/rfc822\r\n\r\nFrom: x\r\n\r\nnested\r\n--zz--",
            b"--zz\r\n" * 50,
            b"=\r\n=4=\r\n",
        ]
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(headers=st.lists(HEADERS, max_size=8), body=BODIES)
def test_mangled_mail_ends_somewhere_visible(app: Any, headers: list[bytes], body: bytes) -> None:
    raw = b"\r\n".join([b"To: support@example.com", *headers]) + b"\r\n\r\n" + body
    decision = accept_message(app, raw, Envelope("pipe", None, ("support@example.com",)))
    assert decision.outcome in ("new_ticket", "reply", "blocked")
    with app.uow() as uow:
        record = uow.import_record(decision.import_id)
        assert record is not None
        assert app.blobs.get(record.raw_sha256) == raw
        assert "\n" not in record.subject and "\r" not in record.subject


def test_deeply_nested_mail_is_malformed(app: Any) -> None:
    head = b"From: d@client.test\r\nTo: support@example.com\r\nSubject: deep\r\n"
    body = b""
    for level in range(60):
        body += f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
    decision = accept_message(app, head + body, Envelope("pipe", None, ("support@example.com",)))
    assert (decision.outcome, decision.reason) == ("blocked", "malformed")
