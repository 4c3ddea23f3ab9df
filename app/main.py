"""The FastAPI application."""

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text

from app.batch.endpoints import router as batch_router
from app.core.body_limit import BodySizeLimitMiddleware
from app.core.config import get_settings
from app.core.db import get_engine
from app.core.deps import SessionDep
from app.core.errors import install_error_handlers
from app.core.migrate import upgrade_to_head
from app.core.openapi import install_links
from app.core.precision import bf16_is_native
from app.events.endpoints import router as events_router
from app.events.hub import EventHub
from app.files.content import router as file_content_router
from app.files.endpoints import router as files_router
from app.jobs.endpoints import router as jobs_router
from app.jobs.reaper import start_reaper_thread
from app.jobs.removal import router as job_removal_router
from app.models.endpoints import router as models_router
from app.models.manage import router as model_manage_router
from app.observability.api import install_metrics
from app.predict.admission import PredictAdmissionMiddleware
from app.predict.service import PredictService
from app.storage import StorageConfigError, check_storage
from app.ui.endpoints import router as ui_router
from app.ui.endpoints import static_files as ui_static_files
from app.usage.endpoints import router as usage_router

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    settings.ensure_dirs()
    try:
        check_storage(settings)  # `tuneserve api` checked already; this is for other servers
    except StorageConfigError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    upgrade_to_head(settings.sqlalchemy_url)
    # The one-off bf16 matmul probe, before any request waits on it (any request may ask for
    # "auto"), on the forward thread: torch run on this thread would start a second OpenMP
    # team (see batcher.py). The predict service owns that thread, the model cache and queues.
    _app.state.predict = predict = PredictService.from_settings(settings)
    predict.run_on_forward_thread(bf16_is_native)
    stop = threading.Event()
    start_reaper_thread(settings, stop)
    _app.state.event_hub = hub = EventHub.from_settings(settings)  # one poll per watched job
    try:
        yield
    finally:
        await hub.close()
        stop.set()
        predict.close()
        get_engine().dispose()


def request_body_limit(path: str) -> int:
    settings = get_settings()
    if path.rstrip("/") == "/v1/files":
        return settings.max_upload_bytes + 1024 * 1024  # the file plus its multipart framing
    return settings.max_request_bytes


def create_app() -> FastAPI:
    app = FastAPI(
        title="tuneserve",
        version="0.1.0",
        summary="Fine-tune Hugging Face sequence classifiers as a service.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_links(app)  # OpenAPI links between operations (app/core/openapi.py)
    app.add_middleware(BodySizeLimitMiddleware, limit_for_path=request_body_limit)
    app.add_middleware(PredictAdmissionMiddleware)  # a full predict queue refuses at once
    app.include_router(files_router)
    app.include_router(jobs_router)
    app.include_router(events_router)
    app.include_router(models_router)
    app.include_router(batch_router)
    app.include_router(file_content_router)
    app.include_router(job_removal_router)
    app.include_router(model_manage_router)
    app.include_router(usage_router)
    app.include_router(ui_router)
    app.mount("/ui/static", ui_static_files, name="ui-static")

    @app.get("/healthz", tags=["health"])
    def healthz(session: SessionDep) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ok"}

    install_metrics(app)  # outermost middleware: counts every answer, 413s and 500s included
    return app


app = create_app()
