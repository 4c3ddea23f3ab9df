"""API shape of a tenant's storage usage."""

from pydantic import BaseModel, Field


class UsageBytes(BaseModel):
    files: int = Field(description="Uploaded files.")
    models: int = Field(description="Model folders (weights, config, tokenizer, card).")
    checkpoints: int = Field(description="Kept epoch weights of succeeded jobs.")
    outputs: int = Field(description="Files that jobs produced (batch predictions).")


class UsageRead(BaseModel):
    bytes: UsageBytes
    total_bytes: int
    limit_bytes: int | None = Field(
        description="TUNESERVE_MAX_STORAGE_BYTES_PER_TENANT; null when unlimited."
    )
