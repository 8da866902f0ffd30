"""What every adapter needs: the pipeline, the catalogue and the process settings."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline import Pipeline
from gateway.settings import Settings
from inference.registry import Catalogue


@dataclass(frozen=True)
class Context:
    settings: Settings
    pipeline: Pipeline
    started_at: int  # unix seconds

    @property
    def catalogue(self) -> Catalogue:
        return self.pipeline.models.catalogue
