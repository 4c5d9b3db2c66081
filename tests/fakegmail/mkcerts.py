#!/usr/bin/python3
"""Make the throw-away certificates the fake Gmail upstream serves.

Everything is made at test time with the `openssl` command-line tool (no
Python packages beyond the standard library), into one directory given by the
caller, and nothing is cached anywhere else. Keys are EC P-256 so the whole
set takes a fraction of a second.

Files made in DIR (the returned dict maps the short name to the path):

  ca          ca.pem / ca.key             the test CA that clients trust
  server      server.pem / server.key     signed by the CA, for DNS:localhost,
                                          IP:127.0.0.1, IP:::1 ("good")
  wrongname   wrongname.pem / .key        same CA, but for DNS:wrong.example
  untrusted_ca untrusted-ca.pem / .key    a second CA nobody trusts
  untrusted   untrusted.pem / .key        signed by the untrusted CA, for
                                          localhost and the loopback IPs
  nosni       nosni.pem / nosni.key       self-signed, like the certificate
                                          Google serves to clients that send
                                          no SNI ("No SNI provided; please fix
                                          your client.", CN=invalid2.invalid)

Use: `make_certs(dir)` from Python, or `mkcerts.py DIR` from a shell (prints
the paths as JSON).
"""

import json
import os
import secrets
import subprocess
import sys
import tempfile

# Leaf certificate extensions, in `openssl x509 -extfile` syntax.
_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = {san}
"""

_CA_EXT = [
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-addext", "subjectKeyIdentifier=hash",
]

_LOCAL_SAN = "DNS:localhost, IP:127.0.0.1, IP:::1"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
_DAYS = "3650"


def _openssl(*args):
    """Run one openssl command; raise with its stderr if it fails."""
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), proc.stderr))


def _self_signed(d, name, subject, ca):
    """Make a self-signed certificate (a CA when `ca`), return (pem, key)."""
    pem, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    extra = _CA_EXT if ca else [
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "subjectAltName=DNS:invalid2.invalid",
    ]
    _openssl("req", "-x509", *_EC, "-keyout", key, "-out", pem,
             "-days", _DAYS, "-subj", subject, *extra)
    return pem, key


def _leaf(d, name, cn, san, ca_pem, ca_key):
    """Make a server certificate signed by (ca_pem, ca_key), return (pem, key)."""
    pem, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        csr, ext = os.path.join(tmp, "req.csr"), os.path.join(tmp, "ext.cnf")
        with open(ext, "w") as f:
            f.write(_LEAF_EXT.format(san=san))
        _openssl("req", "-new", *_EC, "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        # A random serial instead of -CAcreateserial, which would leave a .srl file.
        _openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                 "-set_serial", "0x" + secrets.token_hex(8), "-days", _DAYS,
                 "-sha256", "-extfile", ext, "-out", pem)
    return pem, key


def make_certs(d):
    """Make the full certificate set in directory `d`; return {name: path}."""
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    paths = {}
    ca_pem, ca_key = _self_signed(d, "ca", "/O=smartrelay tests/CN=smartrelay test CA", True)
    paths.update(ca=ca_pem, ca_key=ca_key)
    pem, key = _leaf(d, "server", "localhost", _LOCAL_SAN, ca_pem, ca_key)
    paths.update(server=pem, server_key=key)
    pem, key = _leaf(d, "wrongname", "wrong.example", "DNS:wrong.example", ca_pem, ca_key)
    paths.update(wrongname=pem, wrongname_key=key)
    uca_pem, uca_key = _self_signed(d, "untrusted-ca", "/O=nobody/CN=untrusted test CA", True)
    paths.update(untrusted_ca=uca_pem, untrusted_ca_key=uca_key)
    pem, key = _leaf(d, "untrusted", "localhost", _LOCAL_SAN, uca_pem, uca_key)
    paths.update(untrusted=pem, untrusted_key=key)
    pem, key = _self_signed(
        d, "nosni", "/OU=No SNI provided; please fix your client./CN=invalid2.invalid", False)
    paths.update(nosni=pem, nosni_key=key)
    return paths


def cert_paths(d):
    """Return the {name: path} dict for a directory made by make_certs()."""
    d = os.path.abspath(d)
    names = ["ca", "server", "wrongname", "untrusted_ca", "untrusted", "nosni"]
    paths = {}
    for n in names:
        base = os.path.join(d, n.replace("_", "-"))
        paths[n], paths[n + "_key"] = base + ".pem", base + ".key"
    return paths


def main(argv):
    """CLI: mkcerts.py DIR — make the set and print the paths as JSON."""
    if len(argv) != 2:
        sys.stderr.write("usage: mkcerts.py DIR\n")
        return 2
    print(json.dumps(make_certs(argv[1]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
