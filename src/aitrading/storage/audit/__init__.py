"""The tamper-evident audit trail shared by every component: hash-chained events per tenant, Parquet archives.

Trading decisions (engine), security events (gateway, identity) and configuration changes (config service)
all append here; see docs/adr/0007-audit-chain.md.
"""

from aitrading.storage.audit.archive import (
    ArchiveManifest,
    export_older_than,
    read_manifests,
    verify_archives,
)
from aitrading.storage.audit.chain import AuditLog, AuditRecord, VerifyResult

__all__ = [
    "ArchiveManifest",
    "AuditLog",
    "AuditRecord",
    "VerifyResult",
    "export_older_than",
    "read_manifests",
    "verify_archives",
]
