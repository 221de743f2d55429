"""The Python sandbox behind `tools.code`: bubblewrap, rlimits, timeouts, a warm pool."""

from tools._sandbox._format import format_result
from tools._sandbox._launch import INSTALL_HINT
from tools._sandbox._runner import UNSANDBOXED_WARNING, Sandbox
from tools._sandbox._types import SandboxLimits, SandboxResult, StopReason

__all__ = [
    "INSTALL_HINT",
    "UNSANDBOXED_WARNING",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "StopReason",
    "format_result",
]
