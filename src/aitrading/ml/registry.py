"""The model registry: versioned models in a directory under the platform's data dir, plus an index.

Layout under `root` (default `<storage.data_dir>/models`):

    index.json                      every registered model version, oldest first
    <name>/<version>/meta.json      what the model is: kind, features, params, data range, metrics, code
    <name>/<version>/model.*        the artifact in its library's native format (no pickle)

`name` is `<symbol>-<timeframe>-<kind>-h<horizon>`; versions count 1, 2, … per name and are never reused
or overwritten. A model is referenced as `name@version` (or `name` for its latest). A new version is
written to a temporary directory, renamed into place, then added to the index under an exclusive file
lock; the index is rewritten atomically (write + rename), so readers never see half a model.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aitrading.common.errors import BadInputError, NotFoundError

__all__ = ["ModelRegistry", "model_name"]

_NAME = re.compile(r"[A-Za-z0-9_.#+-]{1,120}")


def model_name(symbol: str, timeframe: str, kind: str, horizon: int) -> str:
    """Return the registry name of a model; raise `BadInputError` for a symbol unfit for a path."""
    name = f"{symbol}-{timeframe}-{kind}-h{horizon}"
    if not _NAME.fullmatch(name) or name.startswith("."):
        raise BadInputError(f"model name {name!r} must be 1-120 characters of A-Z, a-z, 0-9, '_.#+-'")
    return name


class ModelRegistry:
    """Versioned model artifacts and metadata in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        path = self.root / "index.json"
        if not path.exists():
            return []
        entries: list[dict[str, Any]] = json.loads(path.read_text())["models"]
        return entries

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump({"models": entries}, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "index.json")

    def register(
        self, name: str, meta: dict[str, Any], write_artifact: Callable[[Path], Path]
    ) -> dict[str, Any]:
        """Store a new version of `name`: `write_artifact(dir)` writes the model file; return the metadata."""
        if not _NAME.fullmatch(name) or name.startswith("."):
            raise BadInputError(f"invalid model name {name!r}")
        with self._locked():
            entries = self._read_index()
            version = 1 + max((e["version"] for e in entries if e["name"] == name), default=0)
            (self.root / name).mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.root / name, prefix=".staging-"))
            try:
                artifact = write_artifact(staging)
                full = dict(meta, name=name, version=version, ref=f"{name}@{version}", artifact=artifact.name)
                (staging / "meta.json").write_text(json.dumps(full, indent=1, sort_keys=True))
                os.rename(staging, self.root / name / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            entry = {k: full[k] for k in ("name", "version", "ref", "kind", "symbol", "timeframe", "created")}
            entry["metrics"] = {"model": full["metrics"]["model"], "baseline": full["metrics"]["baseline"]}
            entries.append(entry)
            self._write_index(entries)
        return full

    def list(self) -> list[dict[str, Any]]:
        """Return the index entries, oldest first."""
        return self._read_index()

    def resolve(self, ref: str) -> tuple[str, int]:
        """Return (name, version) of `name@version` or of the latest version of `name`."""
        name, _, version = ref.partition("@")
        versions = [e["version"] for e in self._read_index() if e["name"] == name]
        if not versions:
            raise NotFoundError(f"no model named {name!r} in the registry at {self.root}")
        if not version:
            return name, max(versions)
        if not version.isdigit() or int(version) not in versions:
            raise NotFoundError(f"model {name!r} has no version {version!r} (versions: {sorted(versions)})")
        return name, int(version)

    def directory(self, ref: str) -> Path:
        """Return the directory of the model `ref`."""
        name, version = self.resolve(ref)
        return self.root / name / str(version)

    def meta(self, ref: str) -> dict[str, Any]:
        """Return the metadata of the model `ref`."""
        meta: dict[str, Any] = json.loads((self.directory(ref) / "meta.json").read_text())
        return meta
