"""The Ray cluster a run uses: ``require_ray``, ``connected`` (a local cluster started and stopped, or one joined),
and ``map_batches_options`` (actors sized to the cluster)."""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import OptionsError, require

log = logging.getLogger(__name__)

LOCAL = "local"
"""The ``address`` that starts a local Ray cluster (``ray.init()`` without an address)."""

# Of the cluster's CPUs, this share (at least one) is left to Ray Data's read tasks and the driver: with every CPU
# held by an actor the read tasks never get a slot (2 CPUs, two 1-CPU actors: backpressured forever, measured).
_RESERVED_SHARE = 1 / 8


def require_ray():
    """``import ray``, or ``MissingDependencyError`` naming the extra."""
    require("ray", "blazeconv[ray]", "running on Ray")
    import ray

    return ray




def map_batches_options(
    actors: int | None = None,
    actor_cpus: float = 1.0,
    batch_size: int = 32,
    cluster_cpus: float | None = None,
    reserve_cpus: float | None = None,
) -> dict:
    """``map_batches`` keyword arguments sized to the cluster: ``{"compute", "num_cpus", "batch_size"}``.

    ``actors`` (None: as many ``actor_cpus``-CPU actors as fit in ``cluster_cpus`` once ``reserve_cpus`` are left
    to the read tasks and the driver); ``cluster_cpus`` (None: the connected cluster's ``CPU`` total, connecting as
    Ray Data would when not connected yet); ``reserve_cpus`` (None: an eighth of the CPUs, at least one: 1 actor on
    2 CPUs, 14 on 16, 56 on 64; 0 for a dataset already in memory, ``from_items``/``from_arrow``, which has no read
    tasks). Leaving no CPU to ``read_*`` tasks deadlocks: on 2 CPUs, two 1-CPU actors beside ``read_binary_files``
    wait for each other forever (measured). Options out of range: ``OptionsError``.
    """
    if not (isinstance(actor_cpus, (int, float)) and math.isfinite(actor_cpus) and actor_cpus > 0):
        raise OptionsError(f"actor_cpus must be a positive number, got {actor_cpus!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch_size must be a positive integer, got {batch_size!r}")
    if reserve_cpus is not None and not (isinstance(reserve_cpus, (int, float)) and math.isfinite(reserve_cpus)
                                         and reserve_cpus >= 0):
        raise OptionsError(f"reserve_cpus must be a number >= 0, got {reserve_cpus!r}")
    ray = require_ray()
    if actors is None:
        if cluster_cpus is None:
            if not ray.is_initialized():
                ray.init()  # what Ray Data's first operation would do: a local cluster, or RAY_ADDRESS's
            cluster_cpus = float(ray.cluster_resources().get("CPU", 1))
        if reserve_cpus is None:
            reserve_cpus = max(1.0, math.floor(cluster_cpus * _RESERVED_SHARE))
        actors = max(1, math.floor((cluster_cpus - reserve_cpus) / actor_cpus + 1e-9))
    elif not isinstance(actors, int) or actors < 1:
        raise OptionsError(f"actors must be a positive integer, got {actors!r}")
    from ray.data import ActorPoolStrategy

    return {"compute": ActorPoolStrategy(size=actors), "num_cpus": actor_cpus, "batch_size": batch_size}


@contextmanager
def connected(address: str | None = LOCAL, num_cpus: int | None = None) -> Iterator[None]:
    """Inside: connected to Ray; disconnected afterwards when this call connected (already connected: used as is).

    ``address``: ``"local"`` or None (a new local cluster of ``num_cpus`` CPUs, default all, shut down on the way
    out, even where ``RAY_ADDRESS`` names another), ``"auto"`` (the running cluster this machine belongs to), ``"HOST:PORT"`` or ``"ray://HOST:PORT"``.
    A local cluster keeps its sockets and logs in a folder of its own under ``$RAY_TMPDIR`` or ``$TMPDIR``
    (short-named: socket paths are limited to about 107 characters), removed afterwards. Ray itself creates
    ``~/.ray/auth_token`` (its token authentication) the first time a local cluster starts.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    local = address in (None, LOCAL)
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    temp_dir = None
    if local:
        parent = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
        temp_dir = tempfile.mkdtemp(prefix="bzray", dir=parent)
        options |= {"num_cpus": num_cpus, "_temp_dir": temp_dir}
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=LOCAL if local else address, **options)  # "local": a new cluster, whatever RAY_ADDRESS says
    except (ConnectionError, ValueError, RuntimeError) as exc:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise OptionsError(f"cannot connect to Ray at {address}: {' '.join(str(exc).split())[:500]}") from None
    if callable(on_term) and threading.current_thread() is threading.main_thread():
        # ray.init replaces SIGTERM's handler with sys.exit(15): keep the caller's (the CLI's: exit 143, one line).
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
