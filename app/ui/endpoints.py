"""/ui: a few static pages over the API. They hold no data themselves: their scripts call the
/v1 API with the key the user enters, which the browser keeps in localStorage."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).parent
router = APIRouter(prefix="/ui", include_in_schema=False)
static_files = StaticFiles(directory=UI_DIR / "static")


def _page(name: str) -> FileResponse:
    return FileResponse(UI_DIR / "pages" / name, headers={"Cache-Control": "no-cache"})


@router.get("")
def jobs_page() -> FileResponse:
    return _page("jobs.html")


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _page("job.html")


@router.get("/models/{model_id}")
def model_page(model_id: str) -> FileResponse:
    return _page("model.html")
