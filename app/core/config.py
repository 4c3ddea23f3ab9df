"""Service settings, read from `TUNESERVE_*` environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.precision import ServingPrecision

MAX_PROCESSES_PER_JOB = 8


class Settings(BaseSettings):
    """All tunables of the API and the worker; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="TUNESERVE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("tuneserve-data"))
    database_url: str | None = None
    broker_url: str | None = None
    base_models_dir: Path | None = None
    queue_name: str = "tuneserve-training"

    # Where uploads, models, kept checkpoints and produced files are stored: empty for the data
    # directory, or an object store URL (`s3://bucket/prefix`; see docs/deployment.md).
    storage_url: str = ""
    # An S3-compatible server other than AWS (SeaweedFS, MinIO, GCS's interoperability API);
    # an http:// endpoint is allowed as given.
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Object-store requests that fail for a passing reason (refused connection, 5xx, timeout)
    # are retried with exponential backoff for up to this long.
    storage_retry_seconds: float = 60.0
    # Local copies of stored objects for libraries that read paths (from_pretrained, pandas):
    # downloaded once, kept up to this many bytes, least recently used out first.
    storage_cache_dir: Path | None = None
    storage_cache_bytes: int = 20 * 1024**3

    # Worker leases: a running job's worker renews its lease every heartbeat; a job whose lease
    # has expired is taken over by the reaper.
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 60.0
    reaper_interval_seconds: float = 15.0
    # A queued job's message is sent again when it is lost (never confirmed sent, or sent to
    # a Redis that has restarted since). This adds a resend after so long in any case (0: off).
    requeue_queued_after_seconds: float = 0.0
    # Leftovers no row owns (model folders of commits that never happened, upload temp files,
    # folders of finished jobs) are removed every sweep interval, once older than the grace.
    sweep_interval_seconds: float = 600.0
    sweep_grace_seconds: float = 900.0
    max_attempts: int = 3
    visibility_timeout_seconds: int = 6 * 3600

    # Processes that train one job (DDP: NCCL on GPUs, gloo on CPUs; see docs/distributed.md):
    # a number, or "auto" for every CUDA device of the worker (1 on a CPU). A job's own
    # `hyperparameters.processes` takes precedence. 1 trains inside the pool process.
    processes_per_job: Annotated[int, Field(ge=1, le=MAX_PROCESSES_PER_JOB)] | Literal["auto"] = 1

    # A `train_loss` event (the mean loss of the last N optimizer steps) every N steps.
    loss_event_every_steps: int = 10

    # Fault-injection tests only: sleep after every training step, so a test can act mid-epoch.
    fault_injection_step_delay_seconds: float = 0.0

    # How long an API process trusts a key it has looked up; a revoked key is refused at
    # most this much later. 0 looks the key up on every request.
    auth_cache_seconds: float = 2.0

    model_cache_size: int = 4
    # Predict micro-batching: inputs per forward pass, and how long a batch may wait for more
    # requests when the model is busy (a lone request never waits).
    predict_max_batch: int = 64
    predict_max_wait_ms: float = 2.0
    # Characters (text and text_pair) per forward pass: long inputs make smaller passes, so a
    # pass, and another tenant's wait for it, stays short (one input is always taken).
    predict_max_batch_chars: int = 8192
    # Threads of the forward pass. 0: one less than the process's cores (at least 1), so the
    # event loop keeps a core while a long pass runs (measured: bench/hostile_tenant.py).
    predict_threads: int = Field(default=0, ge=0)
    # The serving number format when a request names none (see PredictRequest.precision).
    predict_precision: ServingPrecision = "auto"
    # Predict inputs waiting for one model (its precisions together), and in the whole process;
    # while either many wait, requests are refused with Retry-After (429 / 503 predict_overloaded).
    predict_max_queued_inputs_per_model: int = 1024
    predict_max_queued_inputs: int = 4096

    # Prometheus exporter of each worker's training process (prometheus_client's HTTP server,
    # started in the Celery pool process); port 0 disables it. A port in use is logged, not fatal.
    worker_metrics_port: int = 9101
    worker_metrics_host: str = "127.0.0.1"

    # Limits; each one exceeded is answered with a 4xx that names it.
    max_request_bytes: int = 2 * 1024 * 1024  # JSON bodies; uploads have their own limit
    max_upload_bytes: int = 200 * 1024 * 1024
    max_upload_rows: int = 1_000_000
    # Columns of an uploaded file, and characters of one line of it (also of a quoted CSV record
    # over several lines, and of a JSON Lines file's column names together): the upload check
    # holds one line at a time, so these bound its memory whatever the file's size.
    max_upload_columns: int = 1000
    max_upload_line_chars: int = 1024 * 1024
    # Uploads received and checked at once per API process (each takes a worker thread while
    # its body arrives); one more waits up to upload_slot_wait_seconds for a slot, then gets
    # 429 `too_many_uploads` with Retry-After.
    max_concurrent_uploads: int = 2
    upload_slot_wait_seconds: float = 10.0
    # Share of one core that the uploads being received may use together (their threads sleep
    # between pieces of work to keep to it), so that parsing them leaves the event loop and the
    # predict thread room: a 200 MiB upload is then received no faster than this allows.
    upload_cpu_share: float = 0.25
    max_labels: int = 100
    max_epochs: int = 50
    max_batch_size: int = 256
    max_sequence_length: int = 512
    max_queued_jobs_per_tenant: int = 20
    # Bytes a tenant may store (uploads, models, kept checkpoints, produced files; 0: no limit).
    # Past it, uploads answer 413 and new jobs 403 `storage_quota_exceeded`.
    max_storage_bytes_per_tenant: int = 0
    max_predict_inputs: int = 256
    max_predict_text_chars: int = 10_000
    # Hub base models: the config, tokenizer and safetensors files together (job fails
    # `base_model_too_large`). Hub datasets use the upload limits (rows per split, bytes).
    max_base_model_bytes: int = 3 * 1024**3

    # Whether a tenant's Hub names are fetched with the server's Hugging Face token (HF_TOKEN or
    # the saved login). Off: public repositories only, so no tenant reaches the gated or private
    # repositories that the token opens.
    hub_use_server_token: bool = False

    # When set, GET /metrics needs `Authorization: Bearer <token>` (it counts every tenant's jobs).
    metrics_token: str | None = None

    # Event streams (GET /v1/jobs/{id}/events/stream), per API process: open at once per
    # tenant (429 `too_many_streams` beyond), the longest a stream lasts before the client
    # reconnects with Last-Event-ID, and how often the keys of open streams are re-checked
    # (a revoked key's streams end at most this much later).
    max_streams_per_tenant: int = 50
    stream_max_seconds: float = 3600.0
    stream_key_check_seconds: float = 5.0

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_storage_cache_dir(self) -> Path:
        if self.storage_cache_dir is not None:
            return self.storage_cache_dir.expanduser().resolve()
        return self.resolved_data_dir / "cache"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'tuneserve.db'}"

    @property
    def celery_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{self.resolved_data_dir / 'broker.db'}"

    @property
    def uploads_dir(self) -> Path:
        return self.resolved_data_dir / "files"

    @property
    def models_dir(self) -> Path:
        return self.resolved_data_dir / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.resolved_data_dir / "jobs"

    @property
    def resolved_base_models_dir(self) -> Path:
        if self.base_models_dir is not None:
            return self.base_models_dir.expanduser().resolve()
        return self.resolved_data_dir / "base-models"

    def ensure_dirs(self) -> None:
        for path in (self.uploads_dir, self.models_dir, self.jobs_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
