"""The PostgreSQL harness itself: a cluster on a free port that counts its connections."""

from __future__ import annotations

import psycopg

from .postgres_server import PostgresServer, wait_for_connections


def test_the_cluster_takes_connections_and_counts_them(postgres: PostgresServer) -> None:
    postgres.create_database("harness")
    settings = postgres.settings("harness")
    assert postgres.connections("harness") == 0
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname="harness"
    ) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        assert postgres.connections("harness") == 1
    assert wait_for_connections(postgres, "harness", 0) == 0
