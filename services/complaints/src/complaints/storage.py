"""Where evidence files live: a small interface with a local-disk default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{2,5}$")


class EvidenceStorage(Protocol):
    def save(self, key: str, content: bytes) -> None: ...
    def load(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...


class LocalDiskStorage:
    """Files under one folder, named by random keys the service chose (never the uploader)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("invalid storage key")
        return self.root / key[:2] / key

    def save(self, key: str, content: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(content)
        tmp.replace(path)

    def load(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# (content type, extension) by the file's first bytes: the declared content type is not trusted.
def sniff(content: bytes) -> tuple[str, str] | None:
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp", "webp"
    if content.startswith(b"%PDF-"):
        return "application/pdf", "pdf"
    if content[4:8] == b"ftyp":
        return "video/mp4", "mp4"
    return None


def content_disposition(disposition: str, filename: str) -> str:
    """A header value for any file name: an ASCII fallback plus the UTF-8 name (RFC 6266)."""
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "ignore").decode().replace('"', "").strip() or "evidence"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
