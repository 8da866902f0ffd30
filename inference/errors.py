"""Errors raised by the inference layer. The gateway maps each onto an HTTP status in one place."""

from __future__ import annotations


class InferenceError(Exception):
    """Base class; ``str(error)`` is safe to show to a client."""


class ModelNotFound(InferenceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class CatalogueError(InferenceError):
    """The catalogue file or a Modelfile is invalid."""


class ModelUnavailable(InferenceError):
    """The model exists in the catalogue but cannot be loaded (missing file, wrong checksum)."""


class Busy(InferenceError):
    """The pool's queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkerFailed(InferenceError):
    """The worker running this request died or reported an internal error."""


class InvalidRequest(InferenceError):
    """The backend refused the request's content (e.g. the prompt exceeds the context window)."""
