"""`redact_uri`: passwords never reach a message, everything else stays readable."""

import pytest

from mlops_platform.lib.uris import redact_uri


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
        (
            "postgresql+psycopg2://mlflow:s3cr3t@db.internal:5432/mlflow",
            "postgresql+psycopg2://mlflow:***@db.internal:5432/mlflow",
        ),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("https://u:p@ss@example.org/x", "https://u:***@example.org/x"),
        (
            "postgresql://host/db?user=a&password=pw&sslmode=require",
            "postgresql://host/db?user=a&password=***&sslmode=require",
        ),
        ("127.0.0.1:6379,password=pw,ssl=true", "127.0.0.1:6379,password=***,ssl=true"),
        ("postgresql://u:pa/ss#x@db/x", "postgresql://u:***@db/x"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("s3://bucket/key", "s3://bucket/key"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("", ""),
    ],
)
def test_redact_uri_replaces_only_the_password(uri: str, shown: str):
    assert redact_uri(uri) == shown


def test_redact_uri_redacts_every_uri_inside_a_message():
    message = "could not connect to postgresql://a:one@h1/db, then to mysql://b:two@h2:3306/db (timeout)"
    redacted = redact_uri(message)
    assert "one" not in redacted and "two" not in redacted
    assert (
        redacted
        == "could not connect to postgresql://a:***@h1/db, then to mysql://b:***@h2:3306/db (timeout)"
    )
