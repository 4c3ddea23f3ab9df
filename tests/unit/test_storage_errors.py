"""A store that stays down past the retries answers 503 `storage_unavailable` in the one
JSON error shape, with Retry-After."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.errors import install_error_handlers
from app.storage import StorageError


def test_a_store_down_is_a_503_in_the_error_shape() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise StorageError("object store error on files/x.csv: connection refused")

    response = TestClient(app).get("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {
        "error": {
            "code": "storage_unavailable",
            "message": "The object store is unavailable; retry shortly.",
        }
    }
