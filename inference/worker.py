"""A worker process: loads one model and runs one job at a time for its pool.

Protocol: JSON lines. Jobs arrive on stdin; events leave on a private copy of stdout (fd 1 is then
pointed at stderr, so anything a native library prints cannot corrupt the protocol).

    in   {"op": "chat"|"complete"|"embed", "id": N, ...}     {"op": "cancel", "id": N}
    out  {"t": "ready"}
         {"t": "chunk", "id": N, "text": "..."}
         {"t": "done", "id": N, "finish_reason": ..., "usage": [p, c], "timings": [...]}
         {"t": "embeddings", "id": N, "vectors": [[...]], "tokens": N}
         {"t": "cancelled", "id": N}
         {"t": "error", "id": N, "kind": "invalid"|"internal", "message": "..."}
Every job ends with exactly one of done, embeddings, cancelled or error.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import Any, BinaryIO

from inference.backends.gguf import GGUFBackend
from inference.types import Done, Message, Sampling


class _Channel:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self._out.flush()


class _Inbox:
    """Reads stdin on a thread: jobs go to a queue, a cancel sets the running job's event."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.current: int | None = None
        self.cancel = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="inbox").start()

    def _read(self) -> None:
        for line in sys.stdin.buffer:
            message = json.loads(line)
            if message["op"] == "cancel":
                if message["id"] == self.current:
                    self.cancel.set()
            else:
                self.jobs.put(message)
        self.jobs.put(None)  # the gateway went away: stop

    def next_job(self) -> dict[str, Any] | None:
        job = self.jobs.get()
        self.cancel.clear()
        self.current = None if job is None else job["id"]
        return job


def _run(backend: GGUFBackend, job: dict[str, Any], inbox: _Inbox, channel: _Channel) -> None:
    job_id = job["id"]
    if job["op"] == "embed":
        vectors, tokens = backend.embed(job["inputs"], job["truncate"])
        channel.send({"t": "embeddings", "id": job_id, "vectors": vectors, "tokens": tokens})
        return
    sampling = Sampling.model_validate(job["sampling"])
    if job["op"] == "chat":
        messages = [Message.model_validate(m).model_dump() for m in job["messages"]]
        events = backend.chat(messages, sampling, job["format"], inbox.cancel)
    else:
        events = backend.complete(
            job["prompt"], job["suffix"], sampling, job["format"], inbox.cancel)
    for event in events:
        if isinstance(event, Done):
            u, t = event.usage, event.timings
            channel.send({
                "t": "done", "id": job_id, "finish_reason": event.finish_reason,
                "usage": [u.prompt_tokens, u.completion_tokens],
                "timings": [t.prompt_eval_ns, t.eval_ns, t.total_ns],
            })
            return
        channel.send({"t": "chunk", "id": job_id, "text": event})
    channel.send({"t": "cancelled", "id": job_id})


def main() -> None:
    config = json.loads(sys.argv[1])
    channel = _Channel(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)
    backend = GGUFBackend(
        config["path"], num_ctx=config["num_ctx"], threads=config["threads"],
        template=config.get("template"),
    )
    channel.send({"t": "ready"})
    inbox = _Inbox()
    while (job := inbox.next_job()) is not None:
        try:
            _run(backend, job, inbox, channel)
        except ValueError as exc:  # llama-cpp-python's way of refusing a request's content
            channel.send({"t": "error", "id": job["id"], "kind": "invalid", "message": str(exc)})
        except Exception as exc:
            print(f"vagt worker: job {job['id']} failed: {exc!r}", file=sys.stderr)
            channel.send({"t": "error", "id": job["id"], "kind": "internal",
                          "message": type(exc).__name__})


if __name__ == "__main__":
    main()
