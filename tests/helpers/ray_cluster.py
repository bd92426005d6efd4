"""A real Ray cluster on this machine for the serving tests: two CPUs, bound to 127.0.0.1, no dashboard.

Importing this module sets `cluster.LOOPBACK_ENVIRONMENT` for the test process (before ray is
imported), so the cluster's processes listen on 127.0.0.1 only."""
from __future__ import annotations

import os
from contextlib import contextmanager

from pipeline.serving.cluster import LOOPBACK_ENVIRONMENT

os.environ.update(LOOPBACK_ENVIRONMENT)


@contextmanager
def local_cluster(num_cpus: int = 2):
    """Yield the address of a fresh local cluster; Serve and the cluster are shut down on exit."""
    import ray
    from ray import serve

    from pipeline.serving.cluster import connect

    address = connect(num_cpus=num_cpus)
    try:
        yield address
    finally:
        serve.shutdown()
        ray.shutdown()


def replicas(app: str = "studio", deployment: str = "Studio") -> dict[str, int]:
    """The deployment's replicas by state, e.g. {"RUNNING": 2}, and the application's status."""
    from ray import serve

    application = serve.status().applications.get(app)
    if application is None:
        return {}
    states = dict(application.deployments[deployment].replica_states)
    return {**states, "application": str(application.status)}


def replica_descriptions(studio, count: int, tries: int = 60) -> dict:
    """`Description`s of `count` distinct replicas, by name, asking the deployment up to `tries` times
    (each call reaches the replica Serve routes it to)."""
    found = {}
    for _ in range(tries):
        description = studio.handle.describe.remote().result(timeout_s=120)
        found[description.replica] = description
        if len(found) == count:
            break
    return found
