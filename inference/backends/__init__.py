"""Model backends. Each runs inside a worker process."""
