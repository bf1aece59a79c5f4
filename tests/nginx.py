"""Debian's nginx as the tests' reverse proxy: a generated configuration in a temporary directory,
in the foreground, no root rights needed (as root its workers run as root: the directory is private).
Without nginx the caller skips, or fails when FLEXI_REQUIRE_REDIS=1 (CI installs both, .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        message = "nginx is not installed: apt-get install nginx"
        if os.environ.get("FLEXI_REQUIRE_REDIS") == "1":  # CI installs both (.ci/run)
            pytest.fail(f"FLEXI_REQUIRE_REDIS=1 but {message}", pytrace=False)
        pytest.skip(message)
    return found


NGINX_CONF = """
{user}
worker_processes 1;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    log_format up '$status $upstream_addr $upstream_status';
    access_log {root}/access.log up;
    upstream flexi_replicas {{
        least_conn;
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://flexi_replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 120s;
            proxy_next_upstream error timeout;  # default: a POST is retried only if it never reached a replica
        }}
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]

    def upstreams(self) -> list[str]:
        """The upstream address of every logged request (several when nginx tried the next one)."""
        return [line.split()[1] for line in (self.root / "access.log").read_text().splitlines() if line.strip()]


def start_nginx(root: Path, upstreams: list[str]) -> Nginx:
    """Debian's nginx in the foreground in front of `upstreams` (base URLs), everything in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "", root=root, port=port,
                                      servers="\n".join(f"        server {u.removeprefix('http://')} max_fails=1 fail_timeout=30s;"
                                                         for u in upstreams)))
    proc = subprocess.Popen([nginx_binary(), "-p", str(root), "-c", str(conf), "-e", str(root / "error.log"),
                             "-g", f"daemon off; pid {root / 'nginx.pid'};"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nginx exited:\n{(root / 'error.log').read_text(errors='replace')}", pytrace=False)
        try:
            httpx.get(url + "/api/version", timeout=1)
            return Nginx(url, root, proc)
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("nginx did not answer within 10 s", pytrace=False)
