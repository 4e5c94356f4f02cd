"""Configuration from the environment (prefix ``LOSSD_``)."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOSSD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    provider: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads per session; 0: one per core.")
    model_repository: Path | None = Field(None, description="Serve graphs exported by `lossd export` from here.")
    max_elements: int = Field(50_000_000, ge=1, description="Most array elements one request may carry.")
    log_level: str = "info"
    access_log: bool = Field(False, description="Log every request (uvicorn's access log; costs ~14 us each).")
