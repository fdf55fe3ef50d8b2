"""The shipped nginx config (deploy/nginx/templates) run by the real nginx, with TLS from a test CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

from tests.integration.stack import ROOT, free_port, wait_until

TEMPLATES = ROOT / "deploy" / "nginx" / "templates"
VARIABLE = re.compile(r"\$\{(STUDIO_[A-Z0-9_]+)\}")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx") or None


def make_tls(folder: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for ``hosts``: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Studio test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def render_templates(values: dict[str, str], into: Path) -> list[Path]:
    """What the nginx image does with /etc/nginx/templates: every ``*.template`` with its ``${STUDIO_*}``
    names filled in, written without the suffix. A name with no value is an error, not an empty string."""
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for template in sorted(TEMPLATES.glob("*.template")):
        text = template.read_text()
        missing = sorted(set(VARIABLE.findall(text)) - set(values))
        if missing:
            raise AssertionError(f"{template.name} needs {missing}")
        target = into / template.name.removesuffix(".template")
        target.write_text(VARIABLE.sub(lambda m: values[m.group(1)], text))
        written.append(target)
    return written


class Nginx:
    """nginx in the foreground on free ports, with the rendered studio config in its http context."""

    def __init__(self, folder: Path, values: dict[str, str]) -> None:
        binary = nginx_binary()
        assert binary, "nginx is not installed (apt-get install nginx)"
        self.binary = binary
        self.folder = folder
        self.https_port, self.http_port = free_port(), free_port()
        conf_d = folder / "conf.d"
        rendered = render_templates(
            {
                "STUDIO_HTTPS_PORT": str(self.https_port),
                "STUDIO_HTTP_PORT": str(self.http_port),
                "STUDIO_NGINX_INCLUDES": str(conf_d),
                **values,
            },
            conf_d,
        )
        includes = "\n".join(f"    include {p};" for p in rendered if p.suffix == ".conf")
        for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (folder / temp).mkdir(exist_ok=True)
        self.error_log = folder / "error.log"
        self.conf = folder / "nginx.conf"
        self.conf.write_text(
            f"""daemon off;
user root;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{includes}
}}
"""
        )
        self.proc: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.binary, "-t", "-c", str(self.conf), "-p", str(self.folder)],
            capture_output=True,
            text=True,
            check=False,
        )

    def start(self) -> None:
        checked = self.check()
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf), "-p", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        from tests.integration.stack import _reachable

        wait_until(lambda: _reachable("127.0.0.1", self.https_port), 10, what="nginx to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))
