"""Fixtures of the end-to-end tests on an object store."""

import pytest

from tests.support.seaweedfs import S3Server


@pytest.fixture
def prefix(s3_server: S3Server) -> str:
    """A fresh prefix of the session's S3 server: the test's own part of the bucket."""
    return s3_server.prefix()
