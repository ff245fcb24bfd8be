"""Errors the CLI turns into exit codes: ConfigError → 2 (fix the input), LoadError → 1 (retry the load)."""

import re
from typing import List, Optional


class TaxiPipelineError(Exception):
    """Base of the package's errors; the message is one line naming what to fix."""

    exit_code = 1


class ConfigError(TaxiPipelineError, ValueError):
    """Bad arguments or configuration: nothing was loaded."""

    exit_code = 2


class LoadError(TaxiPipelineError):
    """A month could not be loaded or did not reconcile; its previous rows and state are kept."""

    exit_code = 1


class DownloadError(LoadError):
    """A file could not be fetched completely."""


class FileFormatError(LoadError):
    """A file could not be read as the expected layout (truncated gzip, missing columns, bad values)."""


def exception_chain(exc: BaseException) -> List[BaseException]:
    """An exception and its causes, following dlt's `.exception` wrapper attribute too."""
    seen, chain, current = set(), [], exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return chain


def find_cause(exc: BaseException, kind: type) -> Optional[BaseException]:
    """The first exception of `kind` in the chain, or None."""
    return next((e for e in exception_chain(exc) if isinstance(e, kind)), None)


def one_line(exc: BaseException) -> str:
    """The most useful message in an exception chain, on one line: our own error if there is one."""
    picked = find_cause(exc, TaxiPipelineError) or exception_chain(exc)[-1]
    return " ".join(str(picked).split()) or type(picked).__name__


_SECRETS = (
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),  # scheme://user:password@host
    (
        re.compile(r"(?i)\b(password|passwd|pwd|private_key_passphrase|token)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"),
        r"\1\2***",
    ),
)


def redact(text: str) -> str:
    """Mask passwords in connection strings and `password=…` pairs before anything is printed."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text
