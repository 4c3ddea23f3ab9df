"""Schemathesis against the service's own OpenAPI schema: every operation, generated inputs.

No answer may be a 5xx, and every answer must match the schema (status code, content type,
headers, body). `TUNESERVE_FUZZ_EXAMPLES` sets the examples per operation (CI: the default).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from app.auth.repository import TenantRepository
from app.core.db import session_scope
from app.files.repository import FileRepository
from app.main import create_app
from app.tables import DatasetFile, new_id
from tests.support.auth import issue_test_key

EXAMPLES = int(os.environ.get("TUNESERVE_FUZZ_EXAMPLES", "40"))
CHECKS = [
    ignored_auth,  # the same request without the key (or with a wrong one) must be refused
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tuneserve.db'}"


@pytest.fixture
def api_key(configured: Path, database_url: str) -> str:
    return issue_test_key(database_url)


@pytest.fixture
def seeded(configured: Path, api_key: str) -> None:
    """A file to find, so that generated requests sometimes meet real rows."""
    with session_scope() as session:
        tenant = TenantRepository(session).get_by_name("tests")
        assert tenant is not None
        FileRepository(session).add(
            DatasetFile(
                id=new_id("file"),
                tenant_id=tenant.id,
                filename="seed.jsonl",
                format="jsonl",
                size_bytes=1,
                row_count=1,
                columns=["sentence", "label"],
            )
        )


# The app reads its settings and database per request, so it can exist before the fixtures.
# The schema comes from the document, not over ASGI (`from_asgi` would start the app's lifespan
# at import, with the default settings: migrations and threads in ./tuneserve-data).
app = create_app()
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app
# Valid inputs and inputs that break the schema (wrong types, missing fields, bad bodies).
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture(scope="module", autouse=True)
def _stop_the_apps_lifespan() -> Iterator[None]:
    yield
    shutdown_lifespans()  # the threads it started use this module's data dirs


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_answers_match_the_schema(
    case: Case, seeded: None, api_key: str
) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)
