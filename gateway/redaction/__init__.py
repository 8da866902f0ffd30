"""Redaction: recognizers, the redact stage and the response filter."""
