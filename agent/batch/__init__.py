"""Batch runs: an agent over a file of tasks, resumable and sharded, and their run records.

Modules: `_record` (`RunRecord`, one line of the output file, and `Verdict`, a check's result).
"""

from agent.batch._record import RECORD_VERSION, RunRecord, TaskId, Verdict, render_settings

__all__ = [
    "RECORD_VERSION",
    "RunRecord",
    "TaskId",
    "Verdict",
    "render_settings",
]
