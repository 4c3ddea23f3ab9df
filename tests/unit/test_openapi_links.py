"""The OpenAPI document's links (app/core/openapi.py): each joins two documented operations."""

import copy
from typing import Any

import pytest

from app.core.openapi import LINKS, add_links
from app.main import create_app


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


def without_links(document: dict[str, Any]) -> dict[str, Any]:
    bare = copy.deepcopy(document)
    for operations in bare["paths"].values():
        for operation in operations.values():
            for answer in operation.get("responses", {}).values():
                answer.pop("links", None)
    return bare


def test_every_link_joins_documented_answers_and_operations(document: dict[str, Any]) -> None:
    # A link from an undocumented answer is left out: POST /v1/jobs once answered an
    # Idempotency-Key replay 200 without documenting it (the stateful run's finding).
    assert [
        (link.method, link.path, link.status, link.name)
        for link in add_links(without_links(document))
    ] == []


def test_the_served_document_has_the_links(document: dict[str, Any]) -> None:
    served = sum(
        len(answer.get("links", {}))
        for operations in document["paths"].values()
        for operation in operations.values()
        for answer in operation["responses"].values()
    )
    assert served == len(LINKS)
    upload = document["paths"]["/v1/files"]["post"]["responses"]["201"]["links"]
    job = document["paths"]["/v1/jobs"]["post"]["operationId"]
    assert upload["TrainOnFile"] == {
        "operationId": job,
        "requestBody": {"dataset": {"source": "files", "train_file_id": "$response.body#/id"}},
        "description": "A job that trains on this file (its validation split held out).",
    }


def test_link_parameters_are_parameters_of_their_targets(document: dict[str, Any]) -> None:
    by_id = {
        operation["operationId"]: operation
        for operations in document["paths"].values()
        for operation in operations.values()
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            for answer in operation["responses"].values():
                for link in answer.get("links", {}).values():
                    target = by_id[link["operationId"]]
                    names = {(p["in"], p["name"]) for p in target.get("parameters", [])}
                    for parameter in link.get("parameters", {}):
                        where, _, name = parameter.rpartition(".")
                        assert (where or "path", name) in names, (link, parameter)
