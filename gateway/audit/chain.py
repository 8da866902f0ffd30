"""Tamper evidence: a hash chain over the records, signed with the gateway's Ed25519 key.

Each record carries ``chain``, ``seq`` and ``prev`` (the hash of the record before it) and is
hashed as canonical JSON (sorted keys, no spaces, UTF-8: RFC 8785 for the values records hold,
which are strings, integers, null, lists and objects) with SHA-256. The last record of every
batch the gateway writes carries a signed checkpoint over (chain, seq, hash); pruning leaves a
signed anchor where the chain now begins. ``ChainVerifier`` walks a chain and names the first
record where it breaks: a modified, deleted, inserted or reordered record breaks a hash or a
link; records appended without the key carry no valid signature; records cut from the end are
caught by the head the gateway keeps on its own disk (the witness).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.record import Record

GENESIS = "0" * 64
# The columns kept beside each record's canonical body, for search; verify checks they agree.
INDEXED = ("id", "time", "kind", "subject", "action", "model", "decision", "status")


def canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """The end of a chain: its last record's seq and hash (seq 0: an empty chain)."""

    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True, slots=True)
class Signature:
    """A checkpoint: (chain, seq, hash) signed with the key ``key_id``."""

    key_id: str
    value: str  # base64 Ed25519

    @staticmethod
    def message(chain: str, head: Head, key: str) -> bytes:
        return canonical({"chain": chain, "seq": head.seq, "hash": head.hash, "key_id": key})

    def problem(self, keys: Mapping[str, Ed25519PublicKey], chain: str,
                head: Head) -> str | None:
        """Why this signature does not vouch for ``head`` (None: it does)."""
        key = keys.get(self.key_id)
        if key is None:
            return f"its checkpoint is signed by an unknown key {self.key_id}"
        try:
            key.verify(base64.b64decode(self.value, validate=True),
                       self.message(chain, head, self.key_id))
        except (InvalidSignature, ValueError):
            return "its checkpoint signature is invalid"
        return None


@dataclass(frozen=True, slots=True)
class Sealed:
    """A record linked into its chain: the exact bytes that were hashed, their hash, and the
    checkpoint signature when it ends its batch."""

    record: Record
    body: str
    hash: str
    signature: Signature | None = None

    @property
    def seq(self) -> int:
        seq: int = self.record["seq"]
        return seq


# --- signing -------------------------------------------------------------------------------------

class Signer:
    """The gateway's Ed25519 key: made on first use, readable by its owner only."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def open(cls, path: Path) -> Signer:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} does not hold an Ed25519 private key")
            return cls(key)
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return cls(key)

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, chain: str, head: Head) -> Signature:
        value = self._key.sign(Signature.message(chain, head, self.key_id))
        return Signature(self.key_id, base64.b64encode(value).decode())

    def signed(self, sealed: Sealed, chain: str) -> Sealed:
        """``sealed`` carrying a checkpoint: its (chain, seq, hash) signed."""
        signature = self.sign(chain, Head(sealed.seq, sealed.hash))
        return Sealed(sealed.record, sealed.body, sealed.hash, signature)


def link(records: list[Record], chain: str, head: Head) -> tuple[list[Sealed], Head]:
    """Link ``records`` after ``head``, each naming the one before it."""
    sealed = []
    for record in records:
        linked = {**record, "chain": chain, "seq": head.seq + 1, "prev": head.hash}
        body = canonical(linked)
        head = Head(head.seq + 1, digest(body))
        sealed.append(Sealed(linked, body.decode(), head.hash))
    return sealed, head


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A public key from PEM; a private key's PEM gives its public half."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        public = serialization.load_pem_public_key(pem)
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key") from None
        return public
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return private.public_key()


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a pruned chain begins: the signed head of what was pruned."""

    chain: str
    head: Head
    time: str
    signature: Signature


# --- verification --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as the sink holds it: the indexed columns, the body, the stored hash."""

    seq: int
    columns: Mapping[str, Any]
    body: str
    hash: str
    signature: Signature | None


@dataclass(slots=True)
class ChainReport:
    chain: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    signed_seq: int | None = None  # the last record a valid signature vouches for
    broken_at: int | None = None  # the seq of the first record where the chain breaks
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "ok": self.ok, "records": self.records,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "signed_seq": self.signed_seq, "broken_at": self.broken_at,
                "problem": self.problem}


@dataclass
class ChainVerifier:
    """Feed one chain's records in seq order; ``finish`` gives the report. Stops at the first
    break: what follows a break cannot be trusted, and the auditor needs the first one."""

    chain: str
    anchor: Anchor | None  # where a pruned chain begins
    keys: Mapping[str, Ed25519PublicKey]  # key_id → public key
    witness: Head | None = None  # the head the gateway last wrote on its own disk
    report: ChainReport = field(init=False)
    _head: Head | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.report = ChainReport(self.chain)
        if self.anchor is not None:
            problem = self.anchor.signature.problem(self.keys, self.chain, self.anchor.head)
            if problem is not None:
                self._break(self.anchor.head.seq + 1, f"the prune anchor is not valid: {problem}")

    def _break(self, seq: int | None, problem: str) -> None:
        if self.report.problem is None:
            self.report.broken_at, self.report.problem = seq, problem

    def feed(self, stored: StoredRecord) -> bool:
        """Check one record; False once the chain is broken (stop feeding)."""
        if self.report.problem is not None:
            return False
        if self._head is None:
            self.report.first_seq = stored.seq
            self._head = self._start()
        problem = self._problem(stored, self._head)
        if problem is not None:
            self._break(stored.seq, problem)
            return False
        self._head = Head(stored.seq, stored.hash)
        self.report.records += 1
        self.report.last_seq = stored.seq
        if stored.signature is not None:
            self.report.signed_seq = stored.seq
        return True

    def _start(self) -> Head:
        """A chain begins after GENESIS, or after its prune anchor."""
        return self.anchor.head if self.anchor is not None else Head()

    def _problem(self, stored: StoredRecord, head: Head) -> str | None:
        seq = stored.seq
        if seq != head.seq + 1:
            if head.seq == 0 or (self.anchor is not None and head == self.anchor.head):
                return f"the chain starts at seq {seq}, not {head.seq + 1}: records before it " \
                       "were removed without a signed prune anchor"
            return f"seq {head.seq + 1} is missing (the next record is seq {seq})"
        if digest(stored.body.encode()) != stored.hash:
            return f"record {seq} was modified: its content does not match its hash"
        try:
            body = json.loads(stored.body)
        except ValueError:
            return f"record {seq} is not valid JSON"
        if stored.body.encode() != canonical(body):
            return f"record {seq} is not in canonical form"
        if body.get("chain") != self.chain or body.get("seq") != seq:
            return f"record {seq} was moved: it names chain {body.get('chain')!r} " \
                   f"seq {body.get('seq')!r}"
        if body.get("prev") != head.hash:
            return f"record {seq} does not follow record {head.seq}: a record was inserted, " \
                   "removed or reordered"
        for name, value in stored.columns.items():
            if body.get(name) != value:
                return f"record {seq} was modified: its column {name!r} differs from the record"
        if stored.signature is not None:
            problem = stored.signature.problem(self.keys, self.chain, Head(seq, stored.hash))
            if problem is not None:
                return f"record {seq}: {problem}"
        if self.witness is not None and seq == self.witness.seq \
                and stored.hash != self.witness.hash:
            return f"record {seq} differs from the head the gateway wrote"
        return None

    def finish(self) -> ChainReport:
        report = self.report
        if report.problem is not None:
            return report
        last = self._head.seq if self._head else self._start().seq
        signed = report.signed_seq or self._start().seq
        if last > signed:
            self._break(signed + 1, f"records {signed + 1}-{last} carry no signed checkpoint: "
                        "they were appended without the gateway's key")
        elif self.witness is not None and self.witness.seq > last:
            self._break(last + 1, f"records {last + 1}-{self.witness.seq} were cut from the end "
                        f"(the gateway wrote up to seq {self.witness.seq})")
        return report
