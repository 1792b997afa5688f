"""Job stores: the ``JobStore`` contract and its MongoDB and in-memory implementations."""

from .base import JobStore
from .memory import InMemoryJobStore
from .mongo import MongoJobStore

__all__ = ["InMemoryJobStore", "JobStore", "MongoJobStore"]
