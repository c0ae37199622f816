"""A test certificate authority, made with the openssl program: a root CA,
an intermediate CA, and server certificates for 127.0.0.1 and localhost
that the clients check against the root (curl --cacert, fetchmail
sslcertfile, mpop --tls-trust-file, mutt, ssl.create_default_context).

    ca = TestCA(directory)
    ca.cert, ca.key            a server certificate signed by the root, its key (0600)
    ca.root                    the root certificate the clients trust
    ca.issue("renewed")        another server certificate (new serial, same names)
    ca.issue("leaf", chained=True)   signed by the intermediate: serve it
                               with ca.intermediate as tls-chain-file

The `ca` fixture in conftest.py makes one per test session.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

NAMES = "DNS:localhost,IP:127.0.0.1,DNS:127.0.0.1"

_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = popper test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = %s
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
""" % NAMES


class TestCA:
    __test__ = False        # not a test class

    def __init__(self, directory):
        self.openssl = shutil.which("openssl")
        if not self.openssl:
            pytest.skip("the openssl program is not installed")
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "openssl.cnf"
        self.config.write_text(_CONFIG)
        self.serial = 1
        self.root, self.root_key = self._self_signed("root", "popper test root CA")
        self.intermediate, self.intermediate_key = self._signed(
            "intermediate", "popper test intermediate CA", "ca", self.root, self.root_key)
        self.cert, self.key = self.issue("server")

    def _openssl(self, *args: str) -> None:
        subprocess.run([self.openssl] + list(args), check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)

    def _key(self, name: str) -> pathlib.Path:
        key = self.dir / (name + ".key")
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", str(key))
        os.chmod(key, 0o600)
        return key

    def _self_signed(self, name: str, subject: str):
        key = self._key(name)
        cert = self.dir / (name + ".pem")
        self._openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert),
                      "-days", "30", "-subj", "/CN=" + subject, "-config", str(self.config),
                      "-extensions", "ca")
        return cert, key

    def _signed(self, name: str, subject: str, extensions: str, issuer, issuer_key):
        key = self._key(name)
        request, cert = self.dir / (name + ".csr"), self.dir / (name + ".pem")
        self._openssl("req", "-new", "-key", str(key), "-out", str(request),
                      "-subj", "/CN=" + subject, "-config", str(self.config))
        self.serial += 1
        self._openssl("x509", "-req", "-in", str(request), "-CA", str(issuer),
                      "-CAkey", str(issuer_key), "-set_serial", str(self.serial),
                      "-days", "30", "-out", str(cert), "-extfile", str(self.config),
                      "-extensions", extensions)
        return cert, key

    def issue(self, name: str, chained: bool = False):
        """(certificate, key) of a new server certificate for 127.0.0.1."""
        issuer = (self.intermediate, self.intermediate_key) if chained else (
            self.root, self.root_key)
        return self._signed(name, "localhost", "server", *issuer)

    def serial_of(self, cert) -> int:
        out = subprocess.run([self.openssl, "x509", "-noout", "-serial", "-in", str(cert)],
                             check=True, stdout=subprocess.PIPE).stdout.decode()
        return int(out.strip().split("=")[1], 16)

    def client_context(self):
        """A verifying client context that trusts the root only."""
        import ssl
        context = ssl.create_default_context(cafile=str(self.root))
        return context

    def config_lines(self, mode: str = "STLS", cert=None, key=None) -> list:
        """The popper config lines serving cert (default: self.cert)."""
        return ["set tls-support = %s" % mode,
                "set tls-server-cert-file = %s" % (cert or self.cert),
                "set tls-private-key-file = %s" % (key or self.key)]
