"""Zoo sweeps on a ``dask.distributed`` cluster (the optional extra ``lyapbook[cluster]``).

Each ensemble of :func:`lyapbook.tasks.zoo.plan_groups` is one task. A worker trains its group
and writes every network into the zoo cache itself (a folder all workers see), so what finished
is on disk whatever happens to the client or to other workers later. When a worker dies while
training, the scheduler gives its task to another worker (dask's own recovery); only that
group is trained again, and nothing already in the cache.

Use it through :func:`lyapbook.tasks.zoo.run_zoo`::

    run_zoo(specs, scheduler="tcp://scheduler-host:8786", cache="/shared/zoo-cache")
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["connect", "run_groups"]


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "scheduler: running a zoo on a cluster needs dask.distributed; install the extra: pip install 'lyapbook[cluster]'"
        ) from None
    return distributed


def connect(scheduler, timeout: float = 10.0):
    """A ``distributed.Client`` for ``scheduler`` (a client passes through; an address is connected to).

    An address that does not answer within ``timeout`` seconds raises ``ConnectionError`` naming it.
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be a dask.distributed Client or an address like 'tcp://host:8786', "
                        f"got {type(scheduler).__name__}")
    try:
        return distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(
            f"scheduler: no dask scheduler answered at {scheduler} within {timeout:g} s ({type(error).__name__}); "
            "start one (dask scheduler) or check the address"
        ) from None


def run_groups(groups: Sequence[Sequence], cache: str, *, device: str = "cpu", scheduler=None, progress: bool = True,
               threads: int = 1, timeout: float = 10.0) -> list[str]:
    """Train ``groups`` (lists of NetworkSpec) on the cluster at ``scheduler``, each worker storing
    into ``cache``; returns the keys of the networks trained. Connects before submitting anything."""
    from .zoo import network_key, train_and_store

    client = connect(scheduler, timeout)
    owned = client is not scheduler
    try:
        futures = [client.submit(train_and_store, list(group), cache, device, threads, pure=False,
                                 key=f"lyapbook-zoo-{network_key(group[0])}") for group in groups]
        done = _distributed().as_completed(futures)
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(futures), desc=f"zoo on {client.scheduler.address}")
        keys = []
        for future in done:
            keys.extend(future.result())
        return keys
    finally:
        if owned:
            client.close()
