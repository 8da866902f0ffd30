"""API adapters: wire formats in, typed requests to the pipeline, pipeline events out."""
