"""The worker of a started ``Scheduler``: the claim loop and executions (``_worker``), wake-ups
(``_wakeups``), lease keeping (``_leases``), acknowledgements (``_acks``), progress
(``_progress``) and running handlers (``_running``)."""

from ._worker import Worker

__all__ = ["Worker"]
