"""Part-walk stage of parsing: the stdlib's MIME tree to body candidates and attachments.

`PartWalk` visits the parts in document order: text and HTML body candidates,
delivery-status reports for the bounce stage, and every other part as an
`Attachment` with a safe file name and a content type (declared, or sniffed by
python-magic). Bodies come through the `Skeleton`, which decodes the ones cut
out before parsing straight from the original bytes.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32
from typing import NamedTuple

from core.errors import MalformedMail
from core.mail import Attachment
from mailgate.charsets import collapse, decode_bytes, decode_words, fix_8bit
from mailgate.limits import MessageLimits
from mailgate.skeleton import Skeleton

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=\s]")
_USABLE_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
_MAX_NAME = 200
_GENERIC_TYPES = frozenset(
    {"application/octet-stream", "text/plain", "application/x-empty", "inode/x-empty"}
)


class BodyPart(NamedTuple):
    """A body candidate and the multipart/alternative it belongs to, if any."""

    text: str
    group: int | None


@dataclass(slots=True)
class PartWalk:
    """Collects body candidates and attachments in document order."""

    limits: MessageLimits
    skeleton: Skeleton
    plain: list[BodyPart] = field(default_factory=list)
    html: list[BodyPart] = field(default_factory=list)
    groups: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    reports: list[Message] = field(default_factory=list)
    nameless: int = 0
    charset: str | None = None  # the first non-ASCII charset the message declares

    def visit(
        self, part: Message, depth: int, *, in_alternative: bool, group: int | None = None
    ) -> None:
        """`group` numbers the nearest multipart/alternative around the part, so that
        an HTML body is only ever taken as the other form of the same text."""
        if depth > self.limits.max_depth:
            raise MalformedMail("malformed", f"MIME nesting deeper than {self.limits.max_depth}")
        ctype = content_type(part)
        if ctype.startswith("multipart/") and isinstance(part.get_payload(), list):
            self._note_charset(_raw_charset(part))  # Outlook Express declares it here
            alternative = ctype == "multipart/alternative"
            if alternative:
                self.groups += 1
                group = self.groups
            for child in children(part):
                self.visit(child, depth + 1, in_alternative=alternative, group=group)
        elif ctype.startswith("multipart/"):
            self.plain.append(BodyPart(self.text(part), group))
        elif ctype == "message/delivery-status":
            self.reports.append(part)
            self.attachments.append(self.attachment(part))
        elif _is_body(part, ctype):
            found = BodyPart(self.text(part), group)
            (self.plain if ctype == "text/plain" else self.html).append(found)
        elif not (in_alternative and ctype.startswith("text/") and not part.get_filename()):
            self.attachments.append(self.attachment(part))

    def attachment(self, part: Message) -> Attachment:
        declared = _declared_name(part, _raw_charset(part) or self.charset)
        data = self.data(part)
        ctype = _declared_type(part) or sniff_type(data)
        if declared:
            name = safe_filename(declared)
        else:
            self.nameless += 1
            name = f"attachment_{self.nameless}"
        if not _has_extension(name):
            name = _add_extension(name, data, ctype)
        content_id = part.get("content-id")
        disposition = str(part.get("content-disposition", "")).split(";")[0].strip().lower()
        return Attachment(
            filename=name,
            content_type=ctype,
            data=data,
            inline=disposition == "inline" or (not disposition and content_id is not None),
            content_id=collapse(str(content_id)).strip("<>") or None if content_id else None,
            declared_name=declared,
        )

    def text(self, part: Message) -> str:
        """A body part as text, in its declared charset or the best guess; text that
        is labelled base64 but plainly is not (words and spaces) is taken as written."""
        data = None
        if str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
            written = self.skeleton.encoded(part)
            data = None if _looks_base64(written) else written
        if data is None:
            data = self.skeleton.payload(part)
        if not isinstance(data, bytes):
            data = str(part.get_payload()).encode("utf-8", "surrogateescape")
        declared = part.get_content_charset(None) or _raw_charset(part)
        self._note_charset(declared)
        text = decode_bytes(data, declared)
        return text.replace("\r\n", "\n").replace("\x00", "\ufffd")

    def _note_charset(self, declared: str | None) -> None:
        if self.charset is None and declared and declared.lower() not in ("us-ascii", "ascii"):
            self.charset = declared

    def data(self, part: Message) -> bytes:
        """An attachment's bytes; a message/* part as the message it holds."""
        if part.get_content_maintype() == "message" or part.is_multipart():
            found = children(part)
            if found and content_type(part) == "message/rfc822":
                return bytes(found[0].as_bytes(policy=compat32))
            if found:
                return b"\n".join(bytes(child.as_bytes(policy=compat32)) for child in found)
        data = self.skeleton.payload(part)
        if isinstance(data, bytes):
            return data
        return str(part.get_payload()).encode("utf-8", "surrogateescape")


def content_type(part: Message) -> str:
    """The part's type, also where a broken header runs its parameters on without `;`."""
    return part.get_content_type().split(None, 1)[0]


def children(part: Message) -> list[Message]:
    """The sub-parts of a multipart or message/* part; [] for a leaf."""
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _is_body(part: Message, ctype: str) -> bool:
    if ctype not in ("text/plain", "text/html") or part.get_filename():
        return False
    return str(part.get("content-disposition", "")).split(";")[0].strip().lower() != "attachment"


def _looks_base64(body: bytes) -> bool:
    """Base64 lines are runs of its alphabet: most lines of written text have spaces."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    spaced = sum(1 for line in lines if b" " in line or b"\t" in line)
    return spaced * 10 <= len(lines) and len(_NOT_BASE64.findall(body)) * 100 <= len(body)


def _raw_charset(part: Message) -> str | None:
    match = re.search(r"charset\s*=\s*\"?([^\";\s]+)", str(part.get("content-type", "")), re.I)
    return match.group(1) if match else None


def _declared_name(part: Message, hint: str | None) -> str | None:
    """The sender's name for a part: 8-bit bytes (as UTF-8, else in `hint`, the part's
    or the message's charset), RFC 2231 and RFC 2047 decoded."""
    probe = Message()
    for key, value in part.raw_items():
        if key.lower() in ("content-disposition", "content-type"):
            probe[key] = fix_8bit(re.sub(r"\r?\n", "", str(value)), hint)
    name = probe.get_filename()
    if not name:
        return None
    return decode_words(re.sub(r"\\(.)", r"\1", str(name)), strict=True) or None


def _declared_type(part: Message) -> str | None:
    value = part.get("content-type")
    if value is None:
        return part.get_default_type() if part.get_default_type() == "message/rfc822" else None
    ctype = (str(value).split(";", 1)[0].split() or [""])[0].lower()
    return ctype if _USABLE_TYPE.fullmatch(ctype) else None


def sniff_type(data: bytes) -> str:
    """The content type python-magic sees in the bytes."""
    import magic  # 30 ms to import: only when an attachment needs sniffing

    try:
        return str(magic.from_buffer(data[:65536], mime=True)) or "application/octet-stream"
    except magic.MagicException:
        return "application/octet-stream"


def safe_filename(name: str) -> str:
    """A name safe to show and store: last path part, no controls, bounded, extension kept."""
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = collapse(_UNSAFE_NAME_CHARS.sub("_", name)).lstrip(". ")
    if len(name) <= _MAX_NAME:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 20:
        return name[:_MAX_NAME].rstrip()
    return f"{stem[: _MAX_NAME - len(ext) - 1].rstrip()}.{ext}"


def _has_extension(name: str) -> bool:
    stem, dot, ext = name.rpartition(".")
    return bool(dot and stem and ext and " " not in ext)


def _add_extension(name: str, data: bytes, ctype: str) -> str:
    """Extension of the sniffed type; of the declared one when sniffing says nothing."""
    if ctype in ("message/rfc822", "message/global"):
        return f"{name}.eml"
    sniffed = sniff_type(data)
    generic = sniffed in _GENERIC_TYPES
    choices = (ctype, sniffed) if generic else (sniffed, ctype)
    ext = next((e for e in map(mimetypes.guess_extension, choices) if e), ".unknown")
    return f"{name}{ext}"
