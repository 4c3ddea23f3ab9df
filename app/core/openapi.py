"""OpenAPI links: how one operation's answer feeds the next (an uploaded file's id into a job,
a job's id into its reads and its cancel). Clients and stateful fuzzers (Schemathesis) follow
them to chain real resources instead of guessing ids.

The links are kept here, in one table, rather than on every route decorator.
"""

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

ID = "$response.body#/id"
FIRST_ID = "$response.body#/data/0/id"


@dataclass(frozen=True)
class Link:
    """A link from the answer `status` of (`method`, `path`) to (`to_method`, `to_path`)."""

    method: str
    path: str
    status: str
    name: str
    to_method: str
    to_path: str
    parameters: dict[str, str] = field(default_factory=dict)
    request_body: dict[str, Any] | str | None = None
    description: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)  # x-… keys


def _to_file(method: str, path: str, status: str, expression: str) -> list[Link]:
    ids = {"file_id": expression}
    body = {"dataset": {"source": "files", "train_file_id": expression}}
    both = {"dataset": {**body["dataset"], "validation_file_id": expression}}
    return [
        Link(method, path, status, "GetFile", "get", "/v1/files/{file_id}", ids),
        Link(method, path, status, "GetFileContent", "get", "/v1/files/{file_id}/content", ids),
        Link(
            method,
            path,
            status,
            "TrainOnFile",
            "post",
            "/v1/jobs",
            request_body=body,
            description="A job that trains on this file (its validation split held out).",
        ),
        Link(
            method,
            path,
            status,
            "TrainAndValidateOnFile",
            "post",
            "/v1/jobs",
            request_body=both,
            description="A job that trains and validates on this file.",
        ),
    ]


def _to_job(method: str, path: str, status: str, expression: str) -> list[Link]:
    ids = {"job_id": expression}
    job = "/v1/jobs/{job_id}"
    return [
        Link(method, path, status, "GetJob", "get", job, ids),
        Link(method, path, status, "ListMetrics", "get", f"{job}/metrics", ids),
        Link(method, path, status, "MetricsChart", "get", f"{job}/metrics.png", ids),
        Link(method, path, status, "ListCheckpoints", "get", f"{job}/checkpoints", ids),
        Link(method, path, status, "ListEvents", "get", f"{job}/events", ids),
        Link(method, path, status, "CancelJob", "post", f"{job}/cancel", ids),
        Link(
            method,
            path,
            status,
            "RegisterCheckpoint",
            "post",
            f"{job}/checkpoints/{{epoch}}/model",
            ids,
        ),
        Link(method, path, status, "DeleteJob", "delete", job, ids),
    ]


def _to_model(method: str, path: str, status: str, expression: str) -> list[Link]:
    ids = {"model_id": expression}
    model = "/v1/models/{model_id}"
    return [
        Link(method, path, status, "GetModel", "get", model, ids),
        Link(method, path, status, "Predict", "post", f"{model}/predict", ids),
        Link(method, path, status, "ModelArchive", "get", f"{model}/archive", ids),
        Link(
            method, path, status, "CreateBatchPrediction", "post", f"{model}/batch-predictions", ids
        ),
    ]


def _to_batch(method: str, path: str, status: str, expression: str) -> list[Link]:
    batch = "/v1/batch-predictions/{batch_id}"
    return [
        Link(method, path, status, "GetBatchPrediction", "get", batch, {"batch_id": expression}),
        Link(
            method,
            path,
            status,
            "CancelBatchPrediction",
            "post",
            f"{batch}/cancel",
            {"batch_id": expression},
        ),
        Link(
            method,
            path,
            status,
            "ListBatchPredictionEvents",
            "get",
            "/v1/batch-predictions/{job_id}/events",
            {"job_id": expression},
        ),
    ]


BATCH_CREATE = "/v1/models/{model_id}/batch-predictions"
LINKS: list[Link] = [
    *_to_file("post", "/v1/files", "201", ID),
    Link(
        "post", "/v1/files", "201", "DeleteFile", "delete", "/v1/files/{file_id}", {"file_id": ID}
    ),
    *_to_file("get", "/v1/files", "200", FIRST_ID),
    *_to_file("get", "/v1/files/{file_id}", "200", ID),
    *_to_job("post", "/v1/jobs", "201", ID),
    Link(
        "post",
        "/v1/jobs",
        "201",
        "RetryCreate",
        "post",
        "/v1/jobs",
        {"header.idempotency-key": "$request.header.idempotency-key"},
        request_body="$request.body",
        description="The same request again (a retry): with its Idempotency-Key, the same job.",
        # The body replaces the generated one, as the OpenAPI spec means (Schemathesis merges
        # a link's body field by field unless told so).
        extensions={"x-schemathesis": {"merge_body": False}},
    ),
    *_to_job("post", "/v1/jobs", "200", ID),  # an Idempotency-Key replay: the same job
    *_to_job("get", "/v1/jobs", "200", FIRST_ID),
    *_to_job("get", "/v1/jobs/{job_id}", "200", ID),
    *_to_job("post", "/v1/jobs/{job_id}/cancel", "200", ID),
    *_to_model("get", "/v1/models", "200", FIRST_ID),
    *_to_model("get", "/v1/models/{model_id}", "200", ID),
    Link(
        "get",
        "/v1/models/{model_id}",
        "200",
        "DeleteModel",
        "delete",
        "/v1/models/{model_id}",
        {"model_id": ID},
    ),
    *_to_model("post", "/v1/jobs/{job_id}/checkpoints/{epoch}/model", "201", ID),
    *_to_batch("post", BATCH_CREATE, "201", ID),
    *_to_batch("get", "/v1/batch-predictions", "200", FIRST_ID),
    *_to_batch("get", "/v1/batch-predictions/{batch_id}", "200", ID),
    *_to_batch("post", "/v1/batch-predictions/{batch_id}/cancel", "200", ID),
    Link(
        "get",
        "/v1/batch-predictions/{batch_id}",
        "200",
        "GetOutputFile",
        "get",
        "/v1/files/{file_id}",
        {"file_id": "$response.body#/output_file_id"},
    ),
]


def add_links(schema: dict[str, Any], links: list[Link] = LINKS) -> list[Link]:
    """Write `links` into an OpenAPI document, in place; returns those whose source or target
    operation is not in it (they are left out)."""
    paths = schema.get("paths", {})
    missing = []
    for link in links:
        source = paths.get(link.path, {}).get(link.method, {})
        target = paths.get(link.to_path, {}).get(link.to_method, {})
        answer = source.get("responses", {}).get(link.status)
        if answer is None or "operationId" not in target:
            missing.append(link)
            continue
        definition: dict[str, Any] = {"operationId": target["operationId"]}
        if link.parameters:
            definition["parameters"] = dict(link.parameters)
        if link.request_body is not None:
            definition["requestBody"] = link.request_body
        if link.description:
            definition["description"] = link.description
        definition.update(link.extensions)
        answer.setdefault("links", {})[link.name] = definition
    return missing


def install_links(app: FastAPI) -> None:
    """Serve the app's OpenAPI document with `LINKS` in it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()  # cached by FastAPI after the first call
        if fresh:
            add_links(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
