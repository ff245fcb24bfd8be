"""Where the files live and how they are fetched: URLs per layout, HEAD fingerprints, streamed downloads.

Uses dlt's `requests` helper, so timeouts and retries (5xx, 429, connection errors) follow dlt's runtime
config (`RUNTIME__REQUEST_MAX_ATTEMPTS`, `RUNTIME__REQUEST_BACKOFF_FACTOR`, `RUNTIME__REQUEST_TIMEOUT`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from dlt.sources.helpers.requests import Client, RequestException, Response
from urllib3.exceptions import HTTPError as TransferError

from taxi_pipeline.errors import DownloadError
from taxi_pipeline.settings import (
    CSV,
    DEFAULT_BASE_URLS,
    DOWNLOAD_CHUNK,
    FILE_FORMATS,
)

NOT_PUBLISHED_STATUSES = (404, 403)
"""Statuses meaning "no such file (yet)": GitHub answers 404, the TLC's CloudFront bucket 403."""


def resolve_base_url(base_url: Optional[str], file_format: str) -> str:
    """The root to use: the given one, else (None) the public root of the format's layout.

    An empty one is an error, not the public root: an unset variable must not silently point a run elsewhere.
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"unknown format {file_format!r}: choose csv or parquet")
    if base_url is not None and not str(base_url).strip():
        raise ValueError(
            "the base URL is empty (--base-url / sources.taxi.base_url): give a root http(s)://…, "
            "or leave it out for the public root of the format"
        )
    root = DEFAULT_BASE_URLS[file_format] if base_url is None else str(base_url).strip()
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"bad base URL {root!r}: expected http(s)://… (--base-url / sources.taxi.base_url)")
    return root.rstrip("/")


def file_name(taxi: str, month: str, file_format: str) -> str:
    """The trip file's name in a layout, e.g. `green_tripdata_2019-01.csv.gz`."""
    return f"{taxi}_tripdata_{month}." + ("csv.gz" if file_format == CSV else "parquet")


def trip_url(root: str, taxi: str, month: str, file_format: str) -> str:
    """URL of a trip month: `{root}/{taxi}/…csv.gz` (DataTalksClub) or `{root}/trip-data/…parquet` (TLC)."""
    folder = taxi if file_format == CSV else "trip-data"
    return f"{root}/{folder}/{file_name(taxi, month, file_format)}"


def zones_url(root: str) -> str:
    """URL of the taxi zone lookup, the same in both layouts."""
    return f"{root}/misc/taxi_zone_lookup.csv"


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a published file's version: ETag, Last-Modified and size, as the server reports them."""

    etag: Optional[str]
    last_modified: Optional[str]
    size: Optional[int]

    @classmethod
    def from_headers(cls, headers: Response.headers) -> Fingerprint:  # type: ignore[name-defined]
        """Read the three values from response headers (missing ones are None)."""
        size = headers.get("Content-Length")
        return cls(headers.get("ETag"), headers.get("Last-Modified"), int(size) if size and size.isdigit() else None)

    @classmethod
    def from_state(cls, value: Dict[str, object]) -> Fingerprint:
        """Rebuild from the dict kept in dlt state."""
        size = value.get("size")
        return cls(value.get("etag"), value.get("last_modified"), int(size) if size is not None else None)  # type: ignore[arg-type]

    def as_dict(self) -> Dict[str, object]:
        """The form kept in dlt state."""
        return {"etag": self.etag, "last_modified": self.last_modified, "size": self.size}

    def same_as(self, other: Fingerprint) -> bool:
        """True when every value both sides know agrees (and they share at least one): not republished.

        A server that omits a header on HEAD but sends it on GET (e.g. no Content-Length with chunked HEAD
        answers) must not look republished on every run, so only values known on both sides are compared.
        """
        pairs = [
            (a, b)
            for a, b in zip(
                (self.etag, self.last_modified, self.size), (other.etag, other.last_modified, other.size), strict=True
            )
            if a is not None and b is not None
        ]
        return bool(pairs) and all(a == b for a, b in pairs)

    def __str__(self) -> str:
        parts = [f"etag={self.etag}" if self.etag else "", f"size={self.size}" if self.size is not None else ""]
        if self.last_modified:
            parts.append(f"modified={self.last_modified}")
        return " ".join(p for p in parts if p) or "unknown"


_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "taxi-pipeline (dlt requests helper)"}


def http_client() -> Client:
    """A dlt requests client (retries and timeouts from dlt runtime config) that leaves status checks to us.

    It asks for the bytes as stored (`Accept-Encoding: identity`), so sizes and ETags of HEAD and GET agree and
    a host that compresses on the fly cannot hand back something other than the file.
    """
    return Client(raise_for_status=False, session_attrs={"headers": _HEADERS})


def probe(client: Client, url: str) -> Optional[Fingerprint]:
    """HEAD a file: its fingerprint, or None when it is not published (404/403). Other failures raise.

    Some hosts refuse HEAD (405, or 403 on URLs signed for GET only); then the headers of a GET are used and
    the body is not read.
    """
    try:
        response = client.session.head(url, allow_redirects=True)
        if response.status_code in (403, 405, 501):
            with client.session.get(url, stream=True, allow_redirects=True) as response:
                pass
    except RequestException as exc:
        raise DownloadError(f"cannot reach {url}: {_reason(exc)}") from exc
    if response.status_code in NOT_PUBLISHED_STATUSES:
        return None
    if not response.ok:
        raise DownloadError(f"HEAD {url} answered HTTP {response.status_code}")
    return Fingerprint.from_headers(response.headers)


DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
"""OS errors that mean the local disk (or the process' file size limit) is full."""


def download(
    client: Client, url: str, path: str, on_chunk: Optional[Callable[[int, Optional[int]], None]] = None
) -> Optional[Fingerprint]:
    """Stream a file to `path`; its fingerprint from the GET headers, or None when it is not published.

    `on_chunk(bytes, size)` hears of every chunk written (size: the announced Content-Length, if any). Raises
    DownloadError when the transfer fails or ends short of the announced Content-Length, so a truncated
    download is never read.
    """
    try:
        with client.session.get(url, stream=True, allow_redirects=True) as response:
            if response.status_code in NOT_PUBLISHED_STATUSES:
                return None
            if not response.ok:
                raise DownloadError(f"GET {url} answered HTTP {response.status_code}")
            fingerprint = Fingerprint.from_headers(response.headers)
            written = 0
            with open(path, "wb") as out:
                for chunk in response.raw.stream(DOWNLOAD_CHUNK, decode_content=False):
                    out.write(chunk)
                    written += len(chunk)
                    if on_chunk:
                        on_chunk(len(chunk), fingerprint.size)
    except (RequestException, TransferError) as exc:  # TransferError: urllib3's, e.g. the connection cut mid-body
        raise DownloadError(f"download of {url} failed: {_reason(exc)}") from exc
    except OSError as exc:  # socket errors and local disk errors
        if exc.errno in DISK_FULL:
            where = os.path.dirname(path)
            raise DownloadError(
                f"cannot save {url} to {where}: {exc.strerror}; free disk space there or set TMPDIR to a larger disk"
            ) from exc
        raise DownloadError(f"download of {url} failed: {_reason(exc)}") from exc
    if fingerprint.size is not None and written != fingerprint.size:
        raise DownloadError(f"download of {url} is truncated: got {written} of {fingerprint.size} bytes")
    if fingerprint.size is None:
        fingerprint = Fingerprint(fingerprint.etag, fingerprint.last_modified, written)
    return fingerprint


def _reason(exc: BaseException) -> str:
    """The innermost message of a requests/urllib3 error chain, on one line."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return " ".join(str(exc).split()) or type(exc).__name__
