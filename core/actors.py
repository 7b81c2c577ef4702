"""Who performs an operation: an admin, a client-side sender, or the system."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """The author of a change. `admin_id` is set only for an authenticated admin."""

    email: str
    name: str
    admin_id: int | None = None
    username: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.admin_id is not None

    @property
    def label(self) -> str:
        """How the ticket log names this actor."""
        return self.username or self.email or "system"


SYSTEM = Actor(email="", name="System")
