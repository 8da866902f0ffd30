"""The audit log: one tamper-evident record per request and per admin action."""
