"""Schemathesis, stateful: sequences of calls that follow the schema's OpenAPI links
(app/core/openapi.py), so that generated requests meet real resources: upload a file, train a
job on it, read the job, its metrics, events and checkpoints, cancel it, delete it; list
models, predict, queue a batch prediction and cancel it.

The checks are the stateless run's (tests/fuzz/test_api_schema.py): no 5xx, the documented
status, content type, headers and body (the one error shape for every 4xx), and the key
ignored nowhere. `TUNESERVE_FUZZ_SCENARIOS` and `TUNESERVE_FUZZ_STEPS` set the scenarios and
the most steps in each (CI: the defaults).
"""

import os
import shutil
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response
from schemathesis.python.asgi import shutdown_lifespans

from app.auth.repository import TenantRepository
from app.core.config import get_settings
from app.core.db import Base, session_scope
from app.main import create_app
from app.tables import JobStatus
from tests.support.auth import issue_test_key
from tests.support.rows import job_row, model_row
from tests.support.specs import tiny_spec

# The stateless run's checks (tests/fuzz/test_api_schema.py; not imported: loading that
# module starts its app's lifespan).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,  # the same request without the key (or with a wrong one) must be refused
]
SCENARIOS = int(os.environ.get("TUNESERVE_FUZZ_SCENARIOS", "100"))
STEPS = int(os.environ.get("TUNESERVE_FUZZ_STEPS", "10"))

# The service's limits (app/core/config.py defaults) on what a job may ask for.
LIMITS = {
    "num_train_epochs": 50,
    "per_device_train_batch_size": 256,
    "per_device_eval_batch_size": 256,
    "max_length": 512,
}
# A file that the tiny model's job spec can train on (the `sentence` and `label` columns).
TRAIN_CSV = b"sentence,label\n" + b"".join(
    f"{word} film {i},{'positive' if i % 2 else 'negative'}\n".encode()
    for i, word in enumerate(["good", "bad", "great", "awful", "fine", "poor"] * 2)
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tuneserve.db'}"


# Loaded from the document, not over ASGI (`from_asgi`): that call would start the app's lifespan
# (the predict service, the event hub, the reaper) at import, with the settings of no test.
app = create_app()
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
schema.config.phases.stateful.inference.algorithms = []  # only the schema's own links


def _toss(case: Case, salt: str) -> int:
    """A number drawn from the generated parts of a case (not the ids that links put in it,
    new in every run), so that Hypothesis replaying the case draws it again."""
    body = case.body
    if isinstance(body, dict):
        body = {name: value for name, value in body.items() if name != "dataset"}
    return zlib.crc32(f"{salt}{body!r}{case.query!r}".encode())


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    key: ClassVar[str] = ""
    reset: ClassVar[Callable[[], str]] = staticmethod(lambda: "")
    answers: ClassVar[Counter[tuple[str, int]]] = Counter()  # (operation, status): calls
    failures: ClassVar[list[str]] = []  # each failed check, with a curl command

    def setup(self) -> None:
        """Every scenario starts from the same state: Hypothesis replays and shrinks scenarios,
        and a step must get the same answer each time (the rules it enables depend on it)."""
        self.files = [type(self).reset()]  # uploaded files

    def _pick(self, case: Case) -> str:
        return self.files[_toss(case, "file") % len(self.files)]

    def before_call(self, case: Case) -> None:
        """Three in four valid-mode uploads, jobs and batch predictions are made realistic
        (a parseable file, the tiny model, its columns, an uploaded file): random ones almost
        never pass the service's own checks, and a chain needs real resources."""
        positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
        label = case.operation.label
        if not positive or not isinstance(case.body, dict) or _toss(case, label) % 4 == 0:
            return
        if label == "POST /v1/files":
            case.body = {"file": TRAIN_CSV, "format": "csv"}  # type: ignore[dict-item]
        elif label == "POST /v1/jobs" and self.files:
            dataset = case.body.get("dataset")
            if not isinstance(dataset, dict) or dataset.get("source") != "files":
                case.body["dataset"] = {"source": "files", "train_file_id": self._pick(case)}
            case.body.update(base_model="tiny", text_column="sentence", label_column="label")
            case.body.pop("text_pair_column", None)
            hyperparameters = case.body.get("hyperparameters")
            if isinstance(hyperparameters, dict):  # within the service's limits
                for name, most in LIMITS.items():
                    asked = hyperparameters.get(name)
                    if isinstance(asked, int):
                        hyperparameters[name] = min(asked, most)
        elif label == "POST /v1/models/{model_id}/batch-predictions" and self.files:
            case.body = {"file_id": self._pick(case)}

    def after_call(self, response: Response, case: Case) -> None:
        type(self).answers[case.operation.label, response.status_code] += 1
        if case.operation.label == "POST /v1/files" and response.status_code == 201:
            self.files.append(response.json()["id"])

    def get_call_kwargs(self, case: Case) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {self.key}"}}

    def validate_response(
        self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
    ) -> None:
        try:
            case.validate_response(
                response, checks=CHECKS, headers=kwargs.get("headers"), transport_kwargs=kwargs
            )
        except Exception as exc:
            type(self).failures.append(f"{exc}\n{case.as_curl_command()}")
            raise


def test_stateful_sequences_match_the_schema(
    configured: Path, database_url: str, tiny_model_dir: Path
) -> None:
    models = get_settings().models_dir
    key = issue_test_key(database_url)

    uploads = TestClient(app, headers={"Authorization": f"Bearer {key}"})  # no lifespan

    def reset() -> str:
        """One served model (of a finished job) and one uploaded file, the file's id; no other
        file, job or batch prediction."""
        with session_scope() as session:
            for table in reversed(Base.metadata.sorted_tables):
                if table.name not in ("tenants", "api_keys"):
                    session.execute(table.delete())
            owner = TenantRepository(session).get_by_name("tests")
            assert owner is not None
            job = job_row(owner.id, JobStatus.succeeded, epochs=1.0)
            job.spec = tiny_spec("file_train", "file_validation")
            session.add(job)
            session.flush()
            model = model_row(owner.id, job.id)
            session.add(model)
            shutil.copytree(tiny_model_dir, models / model.id)
        uploaded = uploads.post("/v1/files", files={"file": ("train.csv", TRAIN_CSV)})
        assert uploaded.status_code == 201, uploaded.text
        return str(uploaded.json()["id"])

    Workflow.reset = staticmethod(reset)
    Workflow.key = key
    Workflow.answers = Counter()
    Workflow.failures = []
    try:
        Workflow.run(
            settings=settings(
                max_examples=SCENARIOS,
                stateful_step_count=STEPS,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
    except Flaky as exc:
        # A replay of a failing scenario may take another path (Schemathesis decides whether
        # to follow each link with a random generator of its own): report the failure itself.
        if Workflow.failures:
            pytest.fail("\n\n".join(Workflow.failures[:3]), pytrace=False)
        raise exc
    finally:
        shutdown_lifespans()  # this test's app: its threads use this test's data dir
        calls = Workflow.answers.total()
        print(f"\n{calls} calls, {len({op for op, _ in Workflow.answers})} operations:")
        for (operation, status), n in sorted(Workflow.answers.items()):
            print(f"  {operation} {status}: {n}")
