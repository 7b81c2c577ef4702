"""Reply badges, as the seed's table defines them, and the client a sender belongs to.

owner, authorized_user, sub_account: the sender belongs to the ticket's account;
registered_user: a user with no tie to it; guest: nobody we know, or somebody
tied to several accounts when no ticket decides which; operator: an admin, but
only when the caller has authenticated one (an address alone never is).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.ports import UnitOfWork

OWNER = "owner"
AUTHORIZED_USER = "authorized_user"
REGISTERED_USER = "registered_user"
GUEST = "guest"
OPERATOR = "operator"
SUB_ACCOUNT = "sub_account"


@dataclass(frozen=True, slots=True)
class SenderRole:
    """A sender's badge and the client account it ties them to (if one)."""

    badge: str
    client_id: int | None


def role_in_account(uow: UnitOfWork, email: str, client_id: int) -> str | None:
    """The sender's badge within one account, or None when not part of it."""
    email = email.lower()
    client = uow.client(client_id)
    if client is None:
        return None
    owner = uow.user(client.owner_id)
    if owner is not None and owner.email == email:
        return OWNER
    user = uow.user_by_email(email)
    if user is not None and any(cu.user_id == user.id for cu in uow.client_users(client_id)):
        return AUTHORIZED_USER
    if any(c.email == email for c in uow.contacts(client_id)):
        return SUB_ACCOUNT
    return None


def accounts_of(uow: UnitOfWork, email: str) -> list[int]:
    """Every client account the address belongs to, as owner, user or contact."""
    email = email.lower()
    found: list[int] = []
    user = uow.user_by_email(email)
    if user is not None and user.id is not None:
        found += [c.id for c in uow.clients_owned_by(user.id) if c.id is not None]
        found += [cu.client_id for cu in uow.user_clients(user.id)]
    found += [c.client_id for c in uow.contacts_by_email(email)]
    return sorted(set(found))


def sender_role(
    uow: UnitOfWork, email: str, client_id: int | None, operator: bool = False
) -> SenderRole:
    """The badge of `email` on a ticket of `client_id` (None: a new ticket)."""
    if operator:
        return SenderRole(OPERATOR, client_id)
    if client_id is not None:
        badge = role_in_account(uow, email, client_id)
        if badge is not None:
            return SenderRole(badge, client_id)
        return SenderRole(_unattached(uow, email), client_id)
    accounts = accounts_of(uow, email)
    if len(accounts) == 1:
        badge = role_in_account(uow, email, accounts[0])
        return SenderRole(badge or GUEST, accounts[0])
    if len(accounts) > 1:
        return SenderRole(GUEST, None)
    return SenderRole(_unattached(uow, email), None)


def _unattached(uow: UnitOfWork, email: str) -> str:
    return REGISTERED_USER if uow.user_by_email(email) is not None else GUEST
