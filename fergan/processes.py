"""Waiting for every process of a multi-process run at the points where their work differs.

CPU collectives (gloo) give a peer 30 s to arrive, which a busy host can exceed when one process
does work the others skip (the first process writes samples and summaries; start-up skews too).
A barrier of the coordination service waits as long as it is told, so the next collective starts
with every process present.
"""

import collections

import jax

BARRIER_TIMEOUT_S = 3600
_uses: collections.Counter[str] = collections.Counter()


def wait_for_processes(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """Block until every process reaches the barrier `name` (a no-op in a one-process run).

    Every process must call it with the same names in the same order; each use of a name is a
    fresh barrier.
    """
    if jax.process_count() == 1:
        return
    # jax has no public barrier with a timeout; this is the client its own serialization uses.
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:  # A runtime without the coordination service syncs its own collectives.
        return
    _uses[name] += 1
    client.wait_at_barrier(f"fergan/{name}/{_uses[name]}", timeout_in_ms=timeout_s * 1000)
