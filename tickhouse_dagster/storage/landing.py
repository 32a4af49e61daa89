"""The landing store: where exchange tick files arrive, a local folder or an S3 bucket prefix.

Both stores list files in key order and page with `start_after`, so a caller can walk a landing
area of any size a page at a time.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, HeadObjectOutputTypeDef, ObjectTypeDef

TICK_FILE_SUFFIXES = (".xml", ".xml.gz")
QUARANTINE_PREFIX = "_quarantine/"


class LandingKeyError(ValueError):
    """A key that would escape the landing area."""


@dataclass(frozen=True, order=True)
class LandingFile:
    key: str  # '/'-separated, relative to the landing root; also the Dagster partition key
    size: int
    modified_ns: int  # when the content last changed as the store sees it
    etag: str = ""

    @property
    def version(self) -> str:
        """Changes whenever the content may have changed: a changed file is a new version."""
        return f"{self.size}-{self.modified_ns}" + (f"-{self.etag}" if self.etag else "")

    @property
    def run_key(self) -> str:
        return f"{self.key}@{self.version}"


def is_tick_file(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    hidden = name.startswith((".", "_")) or key.startswith(QUARANTINE_PREFIX)
    return not hidden and name.lower().endswith(TICK_FILE_SUFFIXES)


def checked_key(key: str) -> str:
    """A landing key as given, refusing absolute paths and `..` segments."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key or "\0" in key:
        raise LandingKeyError(f"refused landing key {key!r}: must be a relative path without '..'")
    return key


class LandingStore(Protocol):
    uri: str

    def iter_files(self, start_after: str = "") -> Iterator[LandingFile]:
        """Tick files in key order, beginning after `start_after`."""
        ...

    def stat(self, key: str) -> LandingFile: ...

    def open(self, key: str) -> IO[bytes]: ...

    def write(self, key: str, data: bytes) -> LandingFile: ...

    def move(self, key: str, to_key: str) -> None:
        """Rename within the store; the moved object is a new version where it lands."""
        ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix`, tick file or not, in key order."""
        ...

    def check(self) -> str:
        """Raise with a clear message if the store is unreachable; else describe it."""
        ...


class LocalLanding:
    """A landing folder on local disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    def _file(self, key: str, stat: os.stat_result) -> LandingFile:
        # ctime too: a file moved in with `mv` keeps its old mtime but gets a new ctime.
        return LandingFile(key, stat.st_size, max(stat.st_mtime_ns, stat.st_ctime_ns))

    def iter_files(self, start_after: str = "") -> Iterator[LandingFile]:
        if not self.root.is_dir():
            return
        keys: list[str] = []
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = [d for d in subdirs if not d.startswith((".", "_"))]
            rel = Path(directory).relative_to(self.root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            keys.extend(prefix + f for f in files if is_tick_file(prefix + f))
        for key in sorted(k for k in keys if k > start_after):
            try:
                yield self._file(key, self._path(key).stat())
            except FileNotFoundError:  # removed while listing
                continue

    def stat(self, key: str) -> LandingFile:
        return self._file(key, self._path(key).stat())

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def write(self, key: str, data: bytes) -> LandingFile:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(data)
        partial.replace(path)  # appear whole or not at all
        return self.stat(key)

    def move(self, key: str, to_key: str) -> None:
        target = self._path(to_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._path(key).replace(target)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        found = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        yield from sorted(found)

    def check(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.R_OK | os.W_OK):
            raise PermissionError(f"landing folder {self.root} is not readable and writable")
        return f"local folder {self.root}"


class _BodyReader(io.RawIOBase):
    """A botocore streaming body as a raw stream, so it can be buffered and peeked."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()


def _s3_client(endpoint_url: str | None, region: str) -> S3Client:
    """One client per endpoint, region and credentials in a process: making one costs 0.1–0.3 s
    (boto3 loads its service model), and a run opens the landing store several times. boto3
    clients are thread-safe. Credentials come from the standard chain; the environment's are
    part of the key so a changed one gets a new client."""
    chain = tuple(
        os.environ.get(name)
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        )
    )
    return _cached_s3_client(endpoint_url, region, chain)


@cache
def _cached_s3_client(
    endpoint_url: str | None, region: str, _chain: tuple[str | None, ...]
) -> S3Client:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def _etag(obj: ObjectTypeDef | HeadObjectOutputTypeDef) -> str:
    return obj.get("ETag", "").strip('"')


class S3Landing:
    """A landing prefix in an S3 bucket (SeaweedFS or any S3 API). Credentials come from the
    standard AWS environment / profile chain, never from this object's configuration."""

    def __init__(
        self, uri: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        parsed = urlparse(uri)
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/") + "/" if parsed.path.strip("/") else ""
        self.client = _s3_client(endpoint_url, region or "us-east-1")

    def _key(self, key: str) -> str:
        return self.prefix + checked_key(key)

    def iter_files(self, start_after: str = "") -> Iterator[LandingFile]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix,
            StartAfter=self.prefix + start_after if start_after else "",
        )
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) :]
                if is_tick_file(key):
                    yield self._file(key, obj)

    @staticmethod
    def _file(key: str, obj: ObjectTypeDef) -> LandingFile:
        return LandingFile(
            key, obj.get("Size", 0), int(obj["LastModified"].timestamp() * 1e9), _etag(obj)
        )

    def stat(self, key: str) -> LandingFile:
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        modified = head["LastModified"].timestamp()
        return LandingFile(key, head.get("ContentLength", 0), int(modified * 1e9), _etag(head))

    def open(self, key: str) -> IO[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return io.BufferedReader(_BodyReader(body), buffer_size=1 << 20)

    def write(self, key: str, data: bytes) -> LandingFile:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return self.stat(key)

    def move(self, key: str, to_key: str) -> None:
        # S3 has no rename: copy, then delete; a crash in between leaves both, never neither.
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": self._key(key)}
        self.client.copy_object(Bucket=self.bucket, Key=self._key(to_key), CopySource=source)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :]

    def check(self) -> str:
        self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        return f"S3 bucket {self.bucket!r} prefix {self.prefix!r}"


def landing_store(
    uri: str, *, s3_endpoint: str | None = None, region: str | None = None
) -> LandingStore:
    if uri.startswith("s3://"):
        return S3Landing(uri, endpoint_url=s3_endpoint, region=region)
    return LocalLanding(uri.removeprefix("file://"))
