"""Alembic migrations of the ticketd schema."""
