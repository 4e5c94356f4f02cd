"""Built graphs kept on disk, so a graph is built once per release and machine, not per start.

Building a graph (onnxscript to ONNX, optimised, checked) takes 50-250 ms; loading a built
one into a session takes a few. Entries live under a directory named for the lossd version
and a digest of what a graph is made from (the kernel sources and the onnx and onnxscript
versions), so an edited kernel or an upgrade never meets an old graph. Each entry begins
with the sha256 of the rest: a corrupt or truncated entry is rebuilt, never served.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

log = logging.getLogger("lossd.cache")

DIGEST = hashlib.sha256().digest_size


@cache
def generation() -> str:
    """The directory name for graphs built by this code: version and source digest."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    versions = []
    for package in ("lossd", "onnx", "onnxscript"):
        try:
            versions.append(importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            versions.append("none")
        digest.update(versions[-1].encode() + b"\0")
    return f"{versions[0]}-{digest.hexdigest()[:16]}"


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/lossd/graphs``, else ``~/.cache/lossd/graphs``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lossd" / "graphs"


class GraphCache:
    """Graph bytes by file stem under ``root/<generation>``. A directory that cannot be written
    (a read-only image) is still read; writes that fail are logged once and skipped."""

    def __init__(self, root: Path) -> None:
        self.directory = root / generation()
        self._warned = False

    def path(self, stem: str) -> Path:
        return self.directory / f"{stem}.onnx"

    def get(self, stem: str) -> bytes | None:
        """The entry's graph, or None when it is absent or fails its hash."""
        try:
            data = self.path(stem).read_bytes()
        except OSError:
            return None
        digest, model = data[:DIGEST], data[DIGEST:]
        if len(data) <= DIGEST or hashlib.sha256(model).digest() != digest:
            log.warning("graph cache entry %s is corrupt; rebuilding it", self.path(stem))
            return None
        return model

    def put(self, stem: str, model: bytes) -> bool:
        """Write atomically (a reader sees the old entry, the new one, or none); whether it was written."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=f".{stem}.", delete=False) as part:
                part.write(hashlib.sha256(model).digest() + model)
            # Readable by every user: an image builds its graphs as root and serves them as another.
            os.chmod(part.name, 0o644)
            os.replace(part.name, self.path(stem))
        except OSError as exc:
            if not self._warned:
                log.warning("graph cache %s is not writable (%s); graphs are built in memory", self.directory, exc)
                self._warned = True
            return False
        return True

    def fetch(self, stem: str, build: Callable[[], bytes]) -> bytes:
        """The cached graph, else ``build()``'s, stored for next time."""
        found = self.get(stem)
        if found is None:
            found = build()
            self.put(stem, found)
        return found
