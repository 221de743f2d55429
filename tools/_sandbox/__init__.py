"""The Python sandbox behind `tools.code`: bubblewrap, rlimits, timeouts, a warm pool."""

from ._format import format_result
from ._launch import INSTALL_HINT
from ._runner import UNSANDBOXED_WARNING, Sandbox
from ._types import SandboxLimits, SandboxResult, SandboxSettings, StopReason

__all__ = [
    "INSTALL_HINT",
    "UNSANDBOXED_WARNING",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "SandboxSettings",
    "StopReason",
    "format_result",
]
