"""kubeemu: a Kubernetes API server emulator for tests (real HTTP on 127.0.0.1).

The official ``kubernetes`` client and ``kubectl`` talk to it unchanged. See
``docs/emulator.md``.
"""

from kubeemu.emulator import Emulator
from kubeemu.faults import AuditRecord, Faults

__all__ = ["AuditRecord", "Emulator", "Faults"]
