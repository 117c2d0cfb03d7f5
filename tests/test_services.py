"""The servers of tests/service_fixtures.py, as the hyperparameter-tuning tests use them."""

from __future__ import annotations

import psycopg
import sqlalchemy
from service_fixtures import Postgres, Sshd


def test_a_command_over_ssh_runs_as_the_logged_in_user(sshd: Sshd) -> None:
    with sshd.connection() as connection:
        result = connection.run("whoami && echo over-ssh", hide=True, in_stream=False)
    assert result.stdout.split() == [sshd.user, "over-ssh"]


def test_each_new_database_is_separate(postgres: Postgres) -> None:
    first, second = postgres.new_database("study one"), postgres.new_database("study one")
    assert first != second
    assert _tables(first) == _tables(second) == []
    _execute(first, "CREATE TABLE trials (number integer)")
    assert (_tables(first), _tables(second)) == (["trials"], [])


def test_a_database_url_works_with_sqlalchemy(postgres: Postgres) -> None:
    engine = sqlalchemy.create_engine(postgres.new_database("sqlalchemy"))
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE studies (name text)"))
            connection.execute(sqlalchemy.text("INSERT INTO studies VALUES ('deep_v1')"))
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT name FROM studies")).scalars().all() == ["deep_v1"]
    finally:
        engine.dispose()


def _execute(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url) as connection:  # one transaction, committed at the end
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


def _tables(url: str) -> list[str]:
    return [name for (name,) in _execute(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
