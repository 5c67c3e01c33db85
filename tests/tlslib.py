"""Certificates that must be refused, private Dovecot instances serving
them, and public key pins, for tests/integ/test_tls.py.

Standard library and the openssl command only, built on tests/harness.py
(which it does not change).

    dc = cert_dovecot(t, "expired")     # a Dovecot whose certificate has expired
    dc.ca_file                          # the CA that signed it (trusted via ca_file)
    pin_of_cert(dc.cert_file)           # "sha256//..." of its public key

Kinds (each has exactly one problem; everything else is right):
  "wronghost"   signed by the instance's CA, valid now, for wrong.example only
  "expired"     signed by the instance's CA, for localhost, ended in 2021
  "notyet"      signed by the instance's CA, for localhost, starts in 2090
  "selfsigned"  a self-signed certificate for localhost: not the CA in ca_file

Past and future validity dates come from `openssl ca -startdate/-enddate`
(OpenSSL 3.0's `openssl x509 -req` has only -days), with a throwaway CA
database in the certificate's folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

from harness import Dovecot

KINDS = ("wronghost", "expired", "notyet", "selfsigned")


def _openssl(*args, stdin=None):
    p = subprocess.run(["openssl", *map(str, args)], input=stdin, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n"
                           f"{p.stderr.decode(errors='replace')}")
    return p.stdout


def _server_ext(path, sans):
    Path(path).write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(sans)}\n")
    return path


def make_cert(d, name, cn, sans, ca_crt=None, ca_key=None, start=None, end=None, days=30):
    """A server key and certificate in folder d: NAME.key, NAME.pem.

    ca_crt/ca_key None: self-signed.  start/end ("YYYYMMDDHHMMSSZ"): the
    validity period (signed with `openssl ca`); else `days` from now.
    Returns (cert_path, key_path)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ext = _server_ext(d / f"{name}.ext", sans)
    subj = f"/O=popbridge tls tests/CN={cn}"
    if ca_crt is None:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                 "-out", crt, "-days", days, "-subj", subj, "-extensions", "v3",
                 "-config", _req_conf(d / f"{name}.req.cnf", sans))
    else:
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                 "-out", csr, "-subj", subj)
        if start is None and end is None:
            _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                     "-CAcreateserial", "-out", crt, "-days", days, "-extfile", ext)
        else:
            db = d / f"{name}.cadb"
            db.mkdir(exist_ok=True)
            (db / "index.txt").write_text("")
            (db / "serial").write_text(os.urandom(8).hex().upper() + "\n")
            conf = db / "ca.cnf"
            conf.write_text(
                "[ ca ]\ndefault_ca = tca\n"
                "[ tca ]\n"
                f"database = {db}/index.txt\n"
                f"new_certs_dir = {db}\n"
                f"serial = {db}/serial\n"
                "default_md = sha256\n"
                "policy = pol\n"
                "unique_subject = no\n"
                "email_in_dn = no\n"
                "[ pol ]\norganizationName = optional\ncommonName = supplied\n")
            _openssl("ca", "-batch", "-config", conf, "-cert", ca_crt, "-keyfile", ca_key,
                     "-in", csr, "-out", crt, "-notext", "-extfile", ext,
                     "-startdate", start, "-enddate", end)
    os.chmod(key, 0o600)
    return str(crt), str(key)


def _req_conf(path, sans):
    Path(path).write_text(
        "[ req ]\ndistinguished_name = dn\n[ dn ]\n"
        "[ v3 ]\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(sans)}\n"
        "subjectKeyIdentifier=hash\n")
    return path


def pin_of_cert(cert_path):
    """curl's pin of a certificate's public key: sha256// + base64 of the
    SHA-256 of its DER SubjectPublicKeyInfo (the sample config's recipe)."""
    pub = _openssl("x509", "-in", cert_path, "-pubkey", "-noout")
    der = _openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def pin_of_key(key_path):
    pub = _openssl("pkey", "-in", key_path, "-pubout")
    der = _openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def cert_subject_names(cert_path):
    """The DNS names and IPs of a certificate's subjectAltName."""
    text = _openssl("x509", "-in", cert_path, "-noout", "-ext", "subjectAltName").decode()
    names = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if part.startswith("DNS:") or part.startswith("IP Address:"):
            names.append(part.split(":", 1)[1])
    return names


class CertDovecot(Dovecot):
    """harness.Dovecot serving a certificate of one of KINDS instead of the
    harness's good one.  ca_file stays the instance's own CA (which signed
    the bad certificate, except for "selfsigned"), so each kind has exactly
    one problem.  The harness's own TLS clients (imap(), pop3(), ...) fail
    against it, as popbridge should: use maildir_count() and the log."""

    def __init__(self, kind, **kw):
        if kind not in KINDS:
            raise ValueError(f"unknown certificate kind {kind!r}")
        self.kind = kind
        super().__init__(**kw)
        tls = self.dir / "tls"
        ca_crt, ca_key = tls / "ca.pem", tls / "ca.key"
        local = ["DNS:localhost", "IP:127.0.0.1"]
        if kind == "wronghost":
            crt, key = make_cert(tls, kind, "wrong.example", ["DNS:wrong.example"],
                                 ca_crt, ca_key)
        elif kind == "expired":
            crt, key = make_cert(tls, kind, "localhost", local, ca_crt, ca_key,
                                 start="20200101000000Z", end="20210101000000Z")
        elif kind == "notyet":
            crt, key = make_cert(tls, kind, "localhost", local, ca_crt, ca_key,
                                 start="20900101000000Z", end="20910101000000Z")
        else:
            crt, key = make_cert(tls, kind, "localhost", local)
        self.good_cert_file = self.cert_file
        self.cert_file, self.key_file = crt, key
        self.write_conf()


def cert_dovecot(t, kind) -> CertDovecot:
    """The CertDovecot of `kind` for this test file (made and started on
    first use), registered with the TestContext `t` like t.dovecot()."""
    return t.server(("tlslib.CertDovecot", kind), lambda: CertDovecot(kind).start())
