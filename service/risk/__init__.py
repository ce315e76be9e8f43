"""Rules that act as time passes: the risk worker (see :mod:`service.risk.worker`)."""

from service.risk.worker import SYSTEM_ACTOR, TASK_NAME, PassReport, RiskWorker, idempotency_key

__all__ = ["SYSTEM_ACTOR", "TASK_NAME", "PassReport", "RiskWorker", "idempotency_key"]
