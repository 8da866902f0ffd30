"""A real OpenLDAP `slapd` run by a test fixture: users, groups and nested groups (memberOf), with
plain LDAP (StartTLS capable) and LDAPS listeners using a CA the fixture creates."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers.idp import free_port

SUFFIX = "dc=vagt,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"
SERVICE_DN = f"cn=svc-vagt,ou=services,{SUFFIX}"
SERVICE_PW = "service-secret"
USERS = {"alice": "alice-pass", "bob": "bob-pass", "carol": "carol-pass", "dave": "dave-pass"}


def group_dn(name: str) -> str:
    return f"cn={name},ou=groups,{SUFFIX}"


def user_dn(uid: str) -> str:
    return f"uid={uid},ou=people,{SUFFIX}"


# analysts ∋ alice; engineers ∋ bob; staff ∋ engineers (nested); everyone ∋ staff, dave.
GROUPS = {
    "analysts": [user_dn("alice")],
    "engineers": [user_dn("bob")],
    "staff": [group_dn("engineers")],
    "everyone": [group_dn("staff"), user_dn("dave")],
}

_CONFIG = """dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {dir}/slapd.pid
olcTLSCACertificateFile: {dir}/ca.pem
olcTLSCertificateFile: {dir}/server.pem
olcTLSCertificateKeyFile: {dir}/server.key

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcRootDN: {root_dn}
olcRootPW: {root_pw}
olcDbDirectory: {dir}/data
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by users read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfRefInt: FALSE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
"""


def _data() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: vagt\no: Vagt",
        *(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}"
          for ou in ("people", "groups", "services")),
        f"dn: {SERVICE_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
        f"cn: svc-vagt\nuserPassword: {SERVICE_PW}",
        *(f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()}\n"
          f"sn: {uid.title()}\ndisplayName: {uid.title()} Example\nuserPassword: {password}"
          for uid, password in USERS.items()),
        # groups in dependency order, so memberOf is maintained for nested members too
        *(f"dn: {group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n"
          + "\n".join(f"member: {m}" for m in members)
          for name, members in GROUPS.items()),
    ]
    return "\n\n".join(entries) + "\n"


def _write_tls(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost, signed by it."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                    issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = certificate("Vagt Test CA", ca_key, "Vagt Test CA", ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, "Vagt Test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Directory:
    """slapd with ldap:// and ldaps:// listeners on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        (workdir / "data").mkdir()
        (workdir / "slapd.d").mkdir()
        _write_tls(workdir)
        self.ca_file = workdir / "ca.pem"
        config = _CONFIG.format(dir=workdir, suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW)
        (workdir / "config.ldif").write_text(config)
        subprocess.run(["slapadd", "-n0", "-F", str(workdir / "slapd.d"),
                        "-l", str(workdir / "config.ldif")], check=True, capture_output=True)
        self.port, self.tls_port = free_port(), free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls_url = f"ldaps://127.0.0.1:{self.tls_port}"
        self.process = subprocess.Popen(
            ["slapd", "-d", "0", "-h", f"{self.url}/ {self.tls_url}/",
             "-F", str(workdir / "slapd.d")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_for(self.port)
        (workdir / "data.ldif").write_text(_data())
        # Online, not slapadd: the memberof overlay only maintains memberOf for online writes.
        subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW,
                        "-f", str(workdir / "data.ldif")], check=True, capture_output=True)

    def _wait_for(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("slapd exited before listening")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start listening")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
