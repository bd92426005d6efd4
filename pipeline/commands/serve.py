"""`python -m pipeline serve`: deploy the studio on Ray Serve, for pages started with `app.py --backend ray`.

Starts a Ray cluster on this machine (bound to 127.0.0.1 unless --node-ip-address names the host's
address; dashboard off) and keeps it until Ctrl-C, or joins one with --address (`ray start --head`
on a GPU machine, workers joining it) and leaves the deployment running there. Each replica loads
the model once and serves the requests that reach it in batches of up to --max-batch compatible
requests. --write-config writes the same deployment as a Serve config for `serve deploy FILE`
and starts nothing.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import time
from pathlib import Path

from pipeline.commands.console import fail
from pipeline.commands.options import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    scaling = parser.add_argument_group("replicas")
    scaling.add_argument("--replicas", type=int, help="a fixed number of replicas (default 1)")
    scaling.add_argument("--min-replicas", type=int, help="scale with demand from this many replicas ...")
    scaling.add_argument("--max-replicas", type=int, help="... up to this many")
    scaling.add_argument("--gpus-per-replica", type=float, default=0, help="GPUs each replica holds (default 0)")
    scaling.add_argument("--cpus-per-replica", type=float, default=1, help="CPUs each replica holds (default 1)")
    scaling.add_argument("--threads", type=int, help="torch CPU threads per replica (default: torch's own)")
    scaling.add_argument("--max-batch", type=int, default=4,
                         help="most compatible requests a replica serves as one forward batch (default 4)")
    scaling.add_argument("--batch-wait-ms", type=float, default=10,
                         help="how long a lone request waits for others to batch with (default 10; 0 starts it "
                              "at once, lowest latency, batches only from requests already waiting)")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--address", help="join this cluster (auto, HOST:PORT or ray://HOST:PORT) instead of "
                                           "starting one on this machine")
    cluster.add_argument("--node-ip-address", help="the address a cluster started here binds to (default 127.0.0.1)")
    cluster.add_argument("--num-cpus", type=int, help="CPUs a cluster started here offers (default: all)")
    parser.add_argument("--write-config", type=Path, help="write the Serve config YAML here and start nothing")


def quiet_ray(*, verbose: bool = False) -> None:
    """Serve's own progress lines only with --verbose; its warnings and errors always."""
    if not verbose:
        importlib.import_module("ray.serve")  # which sets its logger's level when first imported
        logging.getLogger("ray.serve").setLevel(logging.WARNING)


def serve_options(args: argparse.Namespace):
    """The `ServeOptions` the flags ask for; ValueError on a bad combination."""
    from pipeline.commands.options import speed_options
    from pipeline.serving.options import ServeOptions

    if args.replicas is not None and (args.min_replicas is not None or args.max_replicas is not None):
        raise ValueError("give either --replicas or --min-replicas and --max-replicas, not both")
    speed = {key: value for key, value in vars(speed_options(args)).items()}
    replicas = args.replicas if args.replicas is not None else (None if args.min_replicas or args.max_replicas
                                                                 else 1)
    return ServeOptions(model=args.model, device=args.device, speed=speed, replicas=replicas,
                        min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                        gpus_per_replica=args.gpus_per_replica, cpus_per_replica=args.cpus_per_replica,
                        max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    try:
        options = serve_options(args)
    except ValueError as error:
        return fail(str(error))
    if args.write_config:
        import yaml

        args.write_config.write_text(yaml.safe_dump(options.config(), sort_keys=False))
        print(f"wrote {args.write_config}; deploy it with: serve deploy {args.write_config}")
        return 0
    from pipeline.serving.cluster import LOOPBACK_ENVIRONMENT

    if args.address is None and args.node_ip_address is None:
        os.environ.update(LOOPBACK_ENVIRONMENT)
    from pipeline.serving.cluster import connect, deploy

    quiet_ray(verbose=args.verbose)
    try:
        address = connect(args.address, node_ip_address=args.node_ip_address, num_cpus=args.num_cpus,
                          verbose=args.verbose)
        deploy(options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        return fail(f"cannot deploy on Ray: {' '.join(str(error).split())}")
    scaling = (f"{options.min_replicas} to {options.max_replicas} replicas" if options.autoscaling
               else f"{options.replicas} replica{'s' if options.replicas != 1 else ''}")
    print(f"studio deployed: model {options.model}, {scaling}, batches of up to {options.max_batch}")
    print(f"start pages with: python app.py --backend ray={address}")
    if args.address is not None:
        return 0  # the deployment stays on the cluster it joined
    print("serving until Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        import ray

        ray.shutdown()  # the cluster this command started, Serve with it
    return 0
