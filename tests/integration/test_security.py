"""API keys, tenant isolation, path tricks and limits, in-process on SQLite and PostgreSQL."""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.cache import get_principal_cache
from app.auth.commands import ensure_first_key, first_key_path
from app.auth.repository import TenantRepository
from app.auth.service import list_keys, revoke_key
from app.core.config import get_settings
from app.core.db import session_scope
from app.jobs.repository import JobRepository
from app.main import create_app
from tests.conftest import reset_caches
from tests.support.auth import issue_test_key
from tests.support.rows import add_trained_model
from tests.support.specs import tiny_spec
from tests.support.tiny_model import sentiment_rows


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = dict(response.json()["error"])
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.fixture
def app(configured: Path) -> Iterator[Any]:
    application = create_app()
    with TestClient(application):  # runs the lifespan once
        yield application


def client_for(app: Any, key: str | None) -> TestClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return TestClient(app, headers=headers)


@pytest.fixture
def alice(app: Any, database_url: str) -> TestClient:
    return client_for(app, issue_test_key(database_url, tenant="alice"))


@pytest.fixture
def bob(app: Any, database_url: str) -> TestClient:
    return client_for(app, issue_test_key(database_url, tenant="bob"))


def upload(client: TestClient, rows: list[dict[str, str]], name: str = "d.jsonl") -> str:
    content = "".join(json.dumps(row) + "\n" for row in rows)
    response = client.post("/v1/files", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --- API keys ---------------------------------------------------------------------------


def v1_routes(app: Any) -> list[tuple[str, str]]:
    """Every /v1 operation of the OpenAPI schema, with its path parameters filled in."""
    return [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1")
        for method in operations
    ]


def test_every_v1_route_needs_a_key(app: Any) -> None:
    routes = v1_routes(app)
    assert len(routes) >= 28  # every /v1 operation of the schema, whatever their number
    assert all(path.startswith("/v1/") for _, path in routes)
    anonymous = client_for(app, None)
    for method, path in routes:
        response = anonymous.request(method, path)
        error = assert_error(response, 401, "missing_api_key")
        assert "tuneserve keys create" in error["message"]
        assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.request(method, path, headers={"Authorization": "Bearer tsk_" + "0" * 48})
        assert_error(wrong, 401, "invalid_api_key")
    basic = anonymous.get("/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_error(basic, 401, "missing_api_key")
    assert anonymous.get("/healthz").status_code == 200


def revoke_tenant_key(tenant: str, key: str) -> str:
    """Revoke the one key of a tenant; return its id."""
    with session_scope() as session:
        [(record, _)] = [
            (k, t) for k, t in list_keys(session, include_revoked=False) if t.name == tenant
        ]
        assert key.startswith(record.prefix)
        assert record.secret_sha256 != key and key not in record.secret_sha256  # hashed
        assert revoke_key(session, record.id)
        return record.id


def test_revoked_key_is_refused_at_once_without_cache(
    configured: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNESERVE_AUTH_CACHE_SECONDS", "0")
    reset_caches()
    key = issue_test_key(database_url, tenant="carol")
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.get("/v1/jobs").status_code == 200
        key_id = revoke_tenant_key("carol", key)
        assert_error(client.get("/v1/jobs"), 401, "invalid_api_key")
    with session_scope() as session:
        assert not revoke_key(session, key_id)  # twice: nothing to revoke


def test_revoked_key_is_refused_once_the_cache_window_passes(app: Any, database_url: str) -> None:
    seconds = get_settings().auth_cache_seconds
    assert seconds > 0  # the default trusts a seen key for a moment
    now = [0.0]
    get_principal_cache().clock = lambda: now[0]
    key = issue_test_key(database_url, tenant="carol")
    client = client_for(app, key)
    assert client.get("/v1/jobs").status_code == 200
    revoke_tenant_key("carol", key)
    now[0] += seconds * 0.9
    assert client.get("/v1/jobs").status_code == 200  # still within the window
    now[0] += seconds * 0.2
    assert_error(client.get("/v1/jobs"), 401, "invalid_api_key")
    # A key never seen is looked up at once, whatever the window.
    assert_error(client_for(app, "tsk_" + "0" * 48).get("/v1/jobs"), 401, "invalid_api_key")


def test_first_key_is_made_once_and_saved_private(configured: Path) -> None:
    settings = get_settings()
    secret = ensure_first_key(settings)
    assert secret is not None and secret.startswith("tsk_")
    path = first_key_path(settings)
    assert path.read_text().strip() == secret
    assert os.stat(path).st_mode & 0o077 == 0
    assert ensure_first_key(settings) is None


# --- tenant isolation -------------------------------------------------------------------


def test_tenants_see_nothing_of_each_other(alice: TestClient, bob: TestClient) -> None:
    train, dev = upload(alice, sentiment_rows(20)), upload(alice, sentiment_rows(10, seed=1))
    job = alice.post("/v1/jobs", json=tiny_spec(train, dev), headers={"Idempotency-Key": "k1"})
    assert job.status_code == 201
    job_id = job.json()["id"]
    model_id = add_trained_model("alice", job_id)

    assert bob.get("/v1/files").json()["data"] == []
    assert bob.get("/v1/jobs").json()["data"] == []
    assert bob.get("/v1/models").json()["data"] == []
    assert_error(bob.get(f"/v1/files/{train}"), 404, "file_not_found")
    assert_error(bob.get(f"/v1/jobs/{job_id}"), 404, "job_not_found")
    assert_error(bob.get(f"/v1/jobs/{job_id}/metrics"), 404, "job_not_found")
    assert_error(bob.post(f"/v1/jobs/{job_id}/cancel"), 404, "job_not_found")
    assert_error(bob.get(f"/v1/models/{model_id}"), 404, "model_not_found")
    predict = bob.post(f"/v1/models/{model_id}/predict", json={"inputs": ["good"]})
    assert_error(predict, 404, "model_not_found")

    # Alice's file ids and model id in Bob's spec read as if they did not exist.
    assert_error(bob.post("/v1/jobs", json=tiny_spec(train, dev)), 422, "unknown_file")
    bob_train = upload(bob, sentiment_rows(20))
    from_alice_model = tiny_spec(bob_train, bob_train, base_model=model_id)
    error = assert_error(bob.post("/v1/jobs", json=from_alice_model), 422, "unknown_base_model")
    never_made = tiny_spec(bob_train, bob_train, base_model="mdl_" + "0" * 24)
    assert error["message"].replace(model_id, "X") == assert_error(
        bob.post("/v1/jobs", json=never_made), 422, "unknown_base_model"
    )["message"].replace("mdl_" + "0" * 24, "X")

    # The same Idempotency-Key in another tenant is another job.
    bob_job = bob.post(
        "/v1/jobs", json=tiny_spec(bob_train, bob_train), headers={"Idempotency-Key": "k1"}
    )
    assert bob_job.status_code == 201 and bob_job.json()["id"] != job_id

    # A cursor from Alice's listing, and a status filter, still show Bob only his own jobs.
    for _ in range(2):
        alice.post("/v1/jobs", json=tiny_spec(train, dev))
    page = alice.get("/v1/jobs", params={"limit": 1}).json()
    assert page["next_cursor"]
    for params in ({"cursor": page["next_cursor"]}, {"status": "queued"}, {"limit": 200}):
        ids = [j["id"] for j in bob.get("/v1/jobs", params=params).json()["data"]]
        assert set(ids) <= {bob_job.json()["id"]}
    assert [j["id"] for j in bob.get("/v1/jobs").json()["data"]] == [bob_job.json()["id"]]
    assert len(alice.get("/v1/jobs").json()["data"]) == 3


# --- path tricks --------------------------------------------------------------------------


def test_base_model_names_cannot_reach_other_paths(
    alice: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = upload(alice, sentiment_rows(20))
    settings = get_settings()
    settings.base_models_dir = base_models = tmp_path / "base-models"
    base_models.mkdir()
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (base_models / "linked-out").symlink_to(outside)
    monkeypatch.chdir(tmp_path)

    for name in ("../tiny", "/etc", "tiny/../../etc", "~root", "linked-out", ""):
        response = alice.post("/v1/jobs", json=tiny_spec(train, train, base_model=name))
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["code"] in ("invalid_base_model", "validation_error")
        assert str(tmp_path) not in response.text  # no server paths in the answer
    linked = alice.post("/v1/jobs", json=tiny_spec(train, train, base_model="linked-out"))
    assert "resolves outside" in linked.json()["error"]["message"]
    assert alice.get("/v1/jobs").json()["data"] == []
    # A Hub-like id is judged by its syntax: whether it also names a path under the server's
    # working directory must not change the answer (the worker never reads that path).
    (tmp_path / "org" / "model").mkdir(parents=True)
    answers = []
    for name in ("org/model", "org/absent"):
        response = alice.post("/v1/jobs", json=tiny_spec(train, train, base_model=name))
        answers.append((response.status_code, response.json()["status"]))
    assert answers == [(201, "queued"), (201, "queued")]


def test_hub_dataset_names_are_hub_ids_only(
    alice: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "files").mkdir(parents=True, exist_ok=True)

    def hub_spec(**dataset: str) -> dict[str, Any]:
        return tiny_spec("x", "x", dataset={"source": "hub", **dataset})

    for dataset in (
        {"name": "csv"},  # a packaged loader, not a Hub dataset
        {"name": "../etc"},
        {"name": "/etc/passwd"},
        {"name": "a/b/c"},
        {"name": "nyu-mll/glue", "train_split": "../train"},
        {"name": "nyu-mll/glue", "config": "../x"},
    ):
        assert_error(alice.post("/v1/jobs", json=hub_spec(**dataset)), 422, "validation_error")
    # "data/files" exists under the working directory and "data/absent" does not: the same
    # answer for both (the worker fetches the Hub repository's files, never that path).
    for name in ("data/files", "data/absent", "nyu-mll/glue"):
        accepted = alice.post("/v1/jobs", json=hub_spec(name=name, config="mrpc"))
        assert accepted.status_code == 201, accepted.text


def test_uploaded_file_names_never_become_paths(alice: TestClient) -> None:
    settings = get_settings()
    content = b"sentence,label\ngood,positive\n"
    for name in ("../../escape.csv", "/tmp/abs.csv", "..\\..\\win.csv"):
        response = alice.post("/v1/files", files={"file": (name, content)}, data={"format": "csv"})
        assert response.status_code == 201, response.text
        record = response.json()
        assert "/" not in record["filename"] and record["filename"] != ".."
        assert (settings.uploads_dir / f"{record['id']}.csv").is_file()
    stored = {p.name for p in settings.uploads_dir.iterdir()}
    assert all(name.startswith("file_") for name in stored)
    assert not (settings.resolved_data_dir.parent / "escape.csv").exists()


# --- limits -----------------------------------------------------------------------------


def test_job_limits(alice: TestClient) -> None:
    settings = get_settings()
    settings.max_epochs, settings.max_batch_size, settings.max_sequence_length = 5, 64, 128
    train = upload(alice, sentiment_rows(20))
    for field, value in (
        ("num_train_epochs", 6),
        ("per_device_train_batch_size", 65),
        ("per_device_eval_batch_size", 65),
        ("max_length", 129),
    ):
        spec = tiny_spec(train, train, hyperparameters={field: value})
        error = assert_error(alice.post("/v1/jobs", json=spec), 422, "limit_exceeded")
        assert field in error["message"]
    assert alice.post("/v1/jobs", json=tiny_spec(train, train)).status_code == 201


def test_queued_jobs_per_tenant(alice: TestClient, bob: TestClient) -> None:
    get_settings().max_queued_jobs_per_tenant = 2
    train = upload(alice, sentiment_rows(20))
    first = [alice.post("/v1/jobs", json=tiny_spec(train, train)) for _ in range(2)]
    assert [r.status_code for r in first] == [201, 201]
    refused = alice.post("/v1/jobs", json=tiny_spec(train, train))
    assert_error(refused, 429, "too_many_queued_jobs")
    assert refused.headers["retry-after"]
    bob_train = upload(bob, sentiment_rows(20))
    assert bob.post("/v1/jobs", json=tiny_spec(bob_train, bob_train)).status_code == 201
    alice.post(f"/v1/jobs/{first[0].json()['id']}/cancel")
    assert alice.post("/v1/jobs", json=tiny_spec(train, train)).status_code == 201


def test_upload_limits(alice: TestClient) -> None:
    settings = get_settings()
    settings.max_upload_rows = 5
    settings.max_upload_bytes = 2000
    too_many = alice.post("/v1/files", files={"file": ("a.csv", "t,l\n" + "x,y\n" * 6)})
    assert_error(too_many, 413, "too_many_rows")
    big = "t,l\n" + "x" * 2500 + ",y\n"
    assert_error(alice.post("/v1/files", files={"file": ("a.csv", big)}), 413, "file_too_large")
    huge = "t,l\n" + "x" * 1_200_000 + ",y\n"  # over the whole request limit: refused unread
    error = assert_error(
        alice.post("/v1/files", files={"file": ("a.csv", huge)}), 413, "request_too_large"
    )
    assert str(settings.max_upload_bytes + 1024 * 1024) in error["message"]
    assert alice.get("/v1/files").json()["data"] == []


def test_request_body_limit_with_and_without_content_length(alice: TestClient) -> None:
    get_settings().max_request_bytes = 1000
    body = json.dumps({"padding": "x" * 2000}).encode()
    declared = alice.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert_error(declared, 413, "request_too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    streamed = alice.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "request_too_large")


def test_predict_limits(alice: TestClient) -> None:
    settings = get_settings()
    settings.max_predict_inputs, settings.max_predict_text_chars = 3, 50
    train = upload(alice, sentiment_rows(20))
    job_id = alice.post("/v1/jobs", json=tiny_spec(train, train)).json()["id"]
    model_id = add_trained_model("alice", job_id)
    url = f"/v1/models/{model_id}/predict"
    assert_error(alice.post(url, json={"inputs": ["a"] * 4}), 413, "too_many_inputs")
    error = assert_error(alice.post(url, json={"inputs": ["a", "x" * 51]}), 422, "input_too_long")
    assert "Input 1" in error["message"]


def test_hostile_uploads_are_clear_400s(alice: TestClient) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"\n\n", "empty"),
        ("header.csv", b"a,b\n", "no rows"),
        ("ragged.csv", b"a,b\n1,2\n1,2,3\n", "Line 3"),
        ("latin1.csv", "a,b\ncaf\xe9,1\n".encode("latin-1"), "UTF-8"),
        ("broken.jsonl", b'{"a": 1}\n{"a": \n', "Line 2"),
        ("list.jsonl", b"[1, 2]\n", "not a JSON object"),
        ("huge.csv", b'a,b\n"' + b"x" * 300_000 + b'",1\n', "field"),
        ("dupes.csv", b"a,a\n1,2\n", "duplicate"),
    ]
    for name, content, words in cases:
        error = assert_error(
            alice.post("/v1/files", files={"file": (name, content)}), 400, "invalid_file"
        )
        assert words.lower() in error["message"].lower(), (name, error)
    bom = alice.post("/v1/files", files={"file": ("bom.csv", b"\xef\xbb\xbfa,b\n1,2\n")})
    assert bom.status_code == 201 and bom.json()["columns"] == ["a", "b"]
    assert [f["filename"] for f in alice.get("/v1/files").json()["data"]] == ["bom.csv"]


def test_job_rows_carry_their_tenant(alice: TestClient) -> None:
    train = upload(alice, sentiment_rows(20))
    job_id = alice.post("/v1/jobs", json=tiny_spec(train, train)).json()["id"]
    with session_scope() as session:
        job = JobRepository(session).get(job_id)
        tenant = TenantRepository(session).get_by_name("alice")
        assert job is not None and tenant is not None
        assert job.tenant_id == tenant.id


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_creates_with_one_idempotency_key_make_one_job(
    alice: TestClient, database_url: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from app.core.db import get_sessionmaker
    from app.jobs import service
    from app.jobs.schemas import JobSpec

    train = upload(alice, sentiment_rows(20))
    spec = JobSpec.model_validate(tiny_spec(train, train))
    with session_scope() as session:
        tenant = TenantRepository(session).get_by_name("alice")
        assert tenant is not None
        tenant_id = tenant.id

    def create(_: int) -> tuple[str, bool]:
        session = get_sessionmaker()()
        try:
            job, created = service.create_job(session, get_settings(), tenant_id, spec, "same")
            session.commit()
            return job.id, created
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, range(16)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
