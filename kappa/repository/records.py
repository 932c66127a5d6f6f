"""What the repository says of a bundle version, as plain data (no database imports)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class BundleRecord:
    name: str
    version: str
    status: str
    uri: str
    digest: str | None
    created_at: float
    labels: dict[str, str]
    summary: dict[str, Any]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `kappa list -o json` prints and the registry server sends."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": datetime.fromtimestamp(self.created_at, timezone.utc).isoformat(),
            "uri": self.uri,
            "digest": self.digest,
            "apis": self.summary.get("apis", []),
            "artifacts": self.summary.get("artifacts", []),
            "labels": self.labels,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleRecord:
        return cls(
            name=data["name"],
            version=data["version"],
            status=data.get("status", "ready"),
            uri=data["uri"],
            digest=data.get("digest"),
            created_at=datetime.fromisoformat(data["created_at"]).timestamp(),
            labels=dict(data.get("labels") or {}),
            summary={"apis": list(data.get("apis") or []), "artifacts": list(data.get("artifacts") or [])},
        )


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    name: str
    version: str
    report: dict[str, Any]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"
