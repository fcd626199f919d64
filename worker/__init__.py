"""The streaming worker: Kafka image events to cached, scored, routed verdicts.

Imports nothing heavy: the worker runs on CPU-only hosts without torch or transformers, and talks
to the model only through ``serving.client.http``. Start with :class:`worker.loop.Worker` or
``aigis worker``.
"""
