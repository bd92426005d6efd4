"""Starting or joining a Ray cluster, and deploying the studio on it.

A cluster started here binds to one address, 127.0.0.1 unless the host names its own, with the
dashboard off, so a trial on one machine sends no Ray traffic anywhere else. Ray turns a loopback
node address into the machine's network address unless `LOOPBACK_ENVIRONMENT` is set before ray is
first imported; the entry points set it (`start` refuses to start a cluster without it).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

LOCAL_ADDRESS = "127.0.0.1"
# Ray reads this once, at import: "0" keeps every process of a single-machine cluster on 127.0.0.1.
LOOPBACK_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def token_environment() -> dict[str, str]:
    """What joining a cluster by its address needs in the environment, set before ray is imported.

    A cluster started by `ray.init` (as `python -m pipeline serve` does) requires Ray's token, kept in
    ~/.ray/auth_token (or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH); Ray sends it only in token mode,
    which it turns on by itself for "auto" but not for an explicit address."""
    if "RAY_AUTH_MODE" in os.environ:
        return {}
    token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
             or (Path.home() / ".ray" / "auth_token").is_file())
    return {"RAY_AUTH_MODE": "token"} if token else {}


def connect(address: str | None = None, *, node_ip_address: str | None = None, num_cpus: int | None = None,
            verbose: bool = False) -> str:
    """Join the cluster at `address` ("auto", "HOST:PORT" or "ray://HOST:PORT"), or start one on this
    machine when None; returns the address other processes join it at."""
    import ray

    quiet = {} if verbose else {"logging_level": logging.WARNING, "log_to_driver": False}
    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    if address:
        ray.init(address=address, **quiet)
    else:
        if node_ip_address is None:
            from ray._private import ray_constants

            if ray_constants.ENABLE_RAY_CLUSTER:
                raise RuntimeError("ray was imported before LOOPBACK_ENVIRONMENT was set, so a local cluster "
                                   "would bind to the network address; set it first or name --node-ip-address")
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=node_ip_address or LOCAL_ADDRESS,
                 **quiet)
    return address if address and address.startswith("ray://") else ray.get_runtime_context().gcs_address


def deploy(options):
    """Deploy `options` (a `ServeOptions`) and return its handle once every replica has loaded the model."""
    from ray import serve

    from pipeline.serving.deployment import application

    serve.start(proxy_location="Disabled")
    return serve.run(application(options), name=options.app_name, route_prefix=None)
