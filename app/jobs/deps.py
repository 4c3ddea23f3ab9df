"""The owned-job dependency: every route under /v1/jobs/{job_id} loads the job through it."""

from typing import Annotated

from fastapi import Depends

from app.auth.deps import PrincipalDep
from app.core.deps import SessionDep
from app.jobs.service import get_job
from app.jobs.states import JobKind
from app.tables import Job


def get_owned_job(session: SessionDep, principal: PrincipalDep, job_id: str) -> Job:
    """The caller's job; another tenant's id answers 404, as if it did not exist."""
    return get_job(session, principal.tenant_id, job_id, JobKind.train)


OwnedJobDep = Annotated[Job, Depends(get_owned_job)]
