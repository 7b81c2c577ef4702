"""The directory: client accounts with their owner, users, contacts and bans."""

from __future__ import annotations

from datetime import datetime

from core.errors import Conflict, NotFound, UsageError
from core.model import Ban, Client, ClientUser, Contact, User
from core.ports import UnitOfWork


def _address(email: str) -> str:
    from core.addresses import valid_email

    address = valid_email(email)
    if address is None:
        raise UsageError(f"not a valid email address: {email!r}")
    return address


def _name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise UsageError("a name is required")
    return cleaned


def add_user(uow: UnitOfWork, email: str, name: str, now: datetime) -> User:
    """A registered user with no account (yet)."""
    address = _address(email)
    if uow.user_by_email(address) is not None:
        raise Conflict(f"a user with address {address} already exists")
    user = User(email=address, name=_name(name), created_at=now)
    uow.add(user)
    uow.flush()
    return user


def add_client(uow: UnitOfWork, name: str, email: str, company: str, now: datetime) -> Client:
    """A client account and its owner (an existing user, or a new one)."""
    address = _address(email)
    owner = uow.user_by_email(address) or add_user(uow, address, name, now)
    assert owner.id is not None
    client = Client(name=_name(name), owner_id=owner.id, company=company.strip(), created_at=now)
    uow.add(client)
    uow.flush()
    return client


def _client(uow: UnitOfWork, client_id: int) -> Client:
    client = uow.client(client_id)
    if client is None:
        raise NotFound(f"no client {client_id}")
    return client


def add_client_user(
    uow: UnitOfWork, client_id: int, email: str, name: str, ticket_emails: bool, now: datetime
) -> ClientUser:
    """An authorized user of the account (a new or existing user)."""
    client = _client(uow, client_id)
    address = _address(email)
    user = uow.user_by_email(address) or add_user(uow, address, name, now)
    assert user.id is not None
    if user.id == client.owner_id:
        raise Conflict(f"{address} already owns client {client_id}")
    if any(cu.user_id == user.id for cu in uow.client_users(client_id)):
        raise Conflict(f"{address} is already a user of client {client_id}")
    link = ClientUser(client_id=client_id, user_id=user.id, ticket_emails=ticket_emails)
    uow.add(link)
    uow.flush()
    return link


def add_contact(
    uow: UnitOfWork, client_id: int, email: str, name: str, ticket_emails: bool
) -> Contact:
    """A contact (sub-account) of the account."""
    _client(uow, client_id)
    address = _address(email)
    if any(c.email == address for c in uow.contacts(client_id)):
        raise Conflict(f"{address} is already a contact of client {client_id}")
    contact = Contact(
        client_id=client_id, email=address, name=_name(name), ticket_emails=ticket_emails
    )
    uow.add(contact)
    uow.flush()
    return contact


def normalise_ban(pattern: str) -> str:
    """A banned address (`x@example.com`) or domain (`example.com`, `@example.com`)."""
    text = pattern.strip().lower()
    if text.startswith("@"):
        text = text[1:]
    elif "@" in text:
        return _address(text)
    if not text or "." not in text or any(c.isspace() or c in "<>,;/\\" for c in text):
        raise UsageError(f"not an address or domain: {pattern!r}")
    return text


def add_ban(uow: UnitOfWork, pattern: str, now: datetime) -> Ban:
    value = normalise_ban(pattern)
    if uow.ban(value) is not None:
        raise Conflict(f"{value} is already banned")
    ban = Ban(pattern=value, created_at=now)
    uow.add(ban)
    uow.flush()
    return ban


def remove_ban(uow: UnitOfWork, pattern: str) -> None:
    ban = uow.ban(normalise_ban(pattern))
    if ban is None:
        raise NotFound(f"{pattern} is not banned")
    uow.delete(ban)
