"""Shared statements: one text, SQLite's spelling derived from PostgreSQL's."""

from __future__ import annotations

from server.store import sql


def test_sqlite_spelling_numbers_parameters_and_drops_casts() -> None:
    assert sql.sqlite("SELECT * FROM t WHERE ($2::text IS NULL OR id < $2) LIMIT $10") == (
        "SELECT * FROM t WHERE (?2 IS NULL OR id < ?2) LIMIT ?10"
    )
    assert sql.sqlite("SELECT $1::timestamptz, $2::text[]") == "SELECT ?1, ?2"


def test_update_builders_number_values_after_the_keys() -> None:
    assert sql.run_update(["status", "error"]) == (
        "UPDATE runs SET status = $2, error = $3 WHERE id = $1 RETURNING id"
    )
    assert sql.step_update(["attempts"]).startswith("UPDATE steps SET attempts = $3 WHERE")
