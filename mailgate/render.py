"""Rendering notification bodies: the Jinja2 environment and one text + HTML pair per mail.

Templates are looked up first in the configured override folder
(`outbound.templates_dir`), then in the package's `templates/emails/`. HTML
templates autoescape; text templates do not. Hands `Rendered` to
`mailgate.notify`, which stores it in the outbox row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)

PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "emails"


@dataclass(frozen=True, slots=True)
class Rendered:
    """The two bodies of one notification."""

    text: str
    html: str


@functools.lru_cache(maxsize=8)
def environment(override_dir: str = "") -> Environment:
    """The environment for an override folder ("" for the package templates only)."""
    folders = [override_dir] if override_dir else []
    loader = ChoiceLoader([FileSystemLoader([*folders, str(PACKAGE_TEMPLATES)])])
    return Environment(
        loader=loader,
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # compiled once per process: no stat of every template per mail
    )


def render(env: Environment, name: str, context: dict[str, Any]) -> Rendered:
    """`name.txt` and `name.html` rendered with the same context."""
    text = env.get_template(f"{name}.txt").render(context)
    html = env.get_template(f"{name}.html").render(context)
    return Rendered(text=text, html=html)
