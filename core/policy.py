"""The settings the ticket rules need, handed in by the application (no global config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.numbers import DEFAULT_MASK

OPEN = "Open"
ANSWERED = "Answered"
CUSTOMER_REPLY = "Customer-Reply"
CLOSED = "Closed"
PRIORITIES = ("Low", "Medium", "High")


@dataclass(frozen=True, slots=True)
class Status:
    """A ticket status: whether it counts as active and whether inactivity closes it."""

    name: str
    active: bool = True
    auto_close: bool = False


DEFAULT_STATUSES = (
    Status(OPEN),
    Status(ANSWERED, auto_close=True),
    Status(CUSTOMER_REPLY, auto_close=True),
    Status("On Hold"),
    Status("In Progress"),
    Status(CLOSED, active=False),
)


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Conditions (empty means any; statuses: any active one) and the actions they trigger."""

    name: str
    departments: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    idle_minutes: int = 0
    set_status: str = ""
    set_priority: str = ""
    set_department: str = ""
    flag_to: str = ""
    note: str = ""

    def describe(self) -> str:
        parts = [
            f"{label} -> {value}"
            for label, value in (
                ("status", self.set_status),
                ("priority", self.set_priority),
                ("department", self.set_department),
                ("flag", self.flag_to),
            )
            if value
        ]
        parts += ["note added"] if self.note else []
        return f"escalation {self.name!r}: {', '.join(parts)}"


# The reference desk's list, plus .jpeg and .eml (forwarded messages) that mail carries often.
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".pdf", ".txt", ".log", ".zip", ".eml")


@dataclass(frozen=True, slots=True)
class Policy:
    """Rules that vary by installation."""

    statuses: tuple[Status, ...] = DEFAULT_STATUSES
    number_mask: str = DEFAULT_MASK
    allowed_extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    close_inactive_hours: int = 72
    rate_limit_count: int = 10
    rate_limit_minutes: int = 5
    acknowledgement_window_minutes: int = 60
    own_domains: frozenset[str] = field(default_factory=frozenset)
    token_secret: bytes = b""
    department_addresses: dict[str, str] = field(default_factory=dict)
    escalations: tuple[EscalationRule, ...] = ()

    def department_for(self, address: str) -> str | None:
        """The department email that receives mail at `address` (itself or an alias)."""
        return self.department_addresses.get(address.lower())

    def status(self, name: str) -> Status | None:
        """The configured status called `name`, matched case-insensitively."""
        wanted = name.strip().lower()
        return next((s for s in self.statuses if s.name.lower() == wanted), None)
