"""Zoo sweeps on dask.distributed: a LocalCluster of two worker processes gives the rows of a local
run, also when a worker is killed while it trains (its task is retried elsewhere and no network
that was already in the cache is trained again); an address without a scheduler fails fast."""

import os
import signal
import socket
import time

import threading

import numpy as np
import pandas as pd
import pytest
import torch

distributed = pytest.importorskip("distributed")

from lyapbook.tasks.cluster import connect  # noqa: E402
from lyapbook.tasks.zoo import ZooCache, network_key, run_zoo, sample_specs  # noqa: E402

SIZES = dict(per_arch=1, archs=("gru", "rnn", "lem"), hidden=6, train_size=96, val_size=64, le_sequences=3)


def entries(cache, specs):
    """Each cached network's file identity and modification time (a retrained network is rewritten)."""
    store = ZooCache(cache)
    return {network_key(s): (store.path(s).stat().st_ino, store.path(s).stat().st_mtime_ns) for s in specs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")}) as local:
        with distributed.Client(local) as client:
            yield local, client


def test_a_cluster_run_equals_the_local_run_even_when_a_worker_dies(cluster, tmp_path):
    local_cluster, client = cluster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finished = sample_specs("smnist", seed=0, epochs=1, **SIZES)  # trained before the interruption
        victims = sample_specs("smnist", seed=1, epochs=10, **dict(SIZES, archs=("lem",), per_arch=2))  # about a second
        reference = run_zoo(finished + victims, cache=tmp_path / "local", progress=False)

        shared = tmp_path / "shared"
        run_zoo(finished, cache=shared, scheduler=client, progress=False)
        before = entries(shared, finished)

        key = f"lyapbook-zoo-{network_key(victims[0])}"  # the dask key of the victims' ensemble
        scheduler = local_cluster.scheduler

        errors = []

        def sweep():
            try:
                results.append(run_zoo(finished + victims, cache=shared, scheduler=client, progress=False))
            except Exception as error:  # reported below
                errors.append(error)

        results: list[pd.DataFrame] = []
        thread = threading.Thread(target=sweep)
        thread.start()
        deadline, task = time.monotonic() + 60, None
        while task is None and time.monotonic() < deadline:
            found = scheduler.tasks.get(key)
            if found is not None and found.state == "processing" and found.processing_on is not None:
                task = found
            time.sleep(0.02)
        assert task is not None, "the sweep never started the victims' ensemble"
        assert not ZooCache(shared).has(victims[0]), "the ensemble finished before the kill: make it longer"
        pid = client.run(os.getpid, workers=[task.processing_on.address])[task.processing_on.address]
        os.kill(pid, signal.SIGKILL)  # the worker dies mid-training; its nanny starts a new one
        thread.join(120)
        assert not errors, errors
        frame = results[0]
        assert task.suspicious >= 1  # the scheduler saw the task's worker die under it, and ran it again
        assert entries(shared, finished) == before  # nothing finished was trained again
        columns = ["seed", "epoch", "train_loss", "val_loss", "test_loss"]
        pd.testing.assert_frame_equal(frame[columns], reference[columns])
        spectra = frame.dropna(subset=["spectrum_seconds"]).spectrum
        expected = reference.dropna(subset=["spectrum_seconds"]).spectrum
        assert all(np.array_equal(a, b) for a, b in zip(spectra, expected))
    finally:
        torch.set_num_threads(threads)


def test_an_address_without_a_scheduler_fails_fast_naming_it(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    specs = sample_specs("smnist", seed=0, epochs=1, **SIZES)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"no dask scheduler answered at {address}"):
        connect(address, timeout=2)
    assert time.monotonic() - started < 30
    with pytest.raises(ConnectionError, match=address):
        run_zoo(specs, cache=tmp_path, scheduler=address, progress=False, connect_timeout=2)
    assert not any(tmp_path.rglob("*.pkl"))
