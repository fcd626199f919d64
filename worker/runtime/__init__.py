"""The stream runtime every Kafka consumer of aigis runs on (the worker, the sink, the reviewer).

:mod:`~worker.runtime.app` is the loop; :mod:`~worker.runtime.handler` what a stream says about
itself; :mod:`~worker.runtime.batch` the micro-batches; :mod:`~worker.runtime.checkpoint` how a
batch is committed; :mod:`~worker.runtime.clients` whether its Kafka clients can still serve it;
:mod:`~worker.runtime.group` rebalances and transactional ids; :mod:`~worker.runtime.slots` each
worker process's slot on its host; :mod:`~worker.runtime.signals` stop requests;
:mod:`~worker.runtime.supervisor` several worker processes; :mod:`~worker.runtime.metrics` the
endpoint.
"""
