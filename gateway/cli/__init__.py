"""The `vagt` command: serve; manage models, API keys, the policy, the audit log; redact."""

from __future__ import annotations

from gateway.cli.audit import audit
from gateway.cli.common import main
from gateway.cli.keys import keys
from gateway.cli.models import models
from gateway.cli.policy import policy
from gateway.cli.redact import redact
from gateway.cli.serve import serve

main.add_command(serve)
main.add_command(models)
main.add_command(keys)
main.add_command(policy)
main.add_command(audit)
main.add_command(redact)

__all__ = ["main"]
