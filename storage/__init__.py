"""Persistence: tables, mapping, unit of work, migrations and the blob store."""
