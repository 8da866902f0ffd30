"""Embedded inference: the model catalogue, worker pools and backends."""
