"""The owned-file dependency: every route under /v1/files/{file_id} that reads a file loads it
through it."""

from typing import Annotated

from fastapi import Depends

from app.auth.deps import PrincipalDep
from app.core.deps import SessionDep
from app.files.service import get_file
from app.tables import DatasetFile


def get_owned_file(session: SessionDep, principal: PrincipalDep, file_id: str) -> DatasetFile:
    """The caller's file; another tenant's id answers 404, as if it did not exist."""
    return get_file(session, principal.tenant_id, file_id)


OwnedFileDep = Annotated[DatasetFile, Depends(get_owned_file)]
