"""The newest migration's revision, known without importing Alembic (the pipe's hot path)."""

HEAD_REVISION = "0001"
