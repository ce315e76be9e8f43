"""The auditor's command line, as plain async functions for ``service.cli``:
``mentorflow replay``, ``verify``, ``projections rebuild`` and ``demo``, a
module each.

Each opens the process's components from the settings, does its work, closes
the store and returns the process exit code: 0 for success, 1 when the answer
is "no" (an unknown relationship, a broken chain), 2 for a usage error.
Output goes to ``out`` (results) and ``err`` (errors, progress), so tests can
capture both.
"""

from service.auditor.demo import demo, demo_relationships
from service.auditor.rebuild import ProgressBar, rebuild
from service.auditor.replay import replay
from service.auditor.verify import verify

__all__ = ["ProgressBar", "demo", "demo_relationships", "rebuild", "replay", "verify"]
