"""Persistence: the ``Store`` protocol, its records, and two backends (SQLite, PostgreSQL)."""
