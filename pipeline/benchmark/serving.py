"""The studio on Ray Serve against the studio in this process, on one machine, in one run.

Two deployments of the same model run side by side on a local cluster, one with a single
replica and one with `replicas`, each replica on one CPU thread (or its GPU), next to a local
studio in this process on one thread:
- latency: one request, warm prompt, through the one-replica deployment against the local studio;
  their ratio is what the Ray hop adds
- throughput: `requests` concurrent requests (different prompts and seeds) through each
  deployment, in images per second; their ratio is what the added replicas bring
The runs compared take turns (`timing.interleaved`); each line has its min-max and a wide spread
is warned about.
"""
from __future__ import annotations

import threading

from pipeline.benchmark.measure import BATCH_PROMPTS, table
from pipeline.benchmark.timing import interleaved, span, spread_warnings

LABELS = {"local": "one request, local studio", "ray": "one request, through Ray Serve",
          "one": "concurrent requests, 1 replica", "many": "concurrent requests, more replicas"}


def deployments(model: str, replicas: int, max_batch: int, gpus_per_replica: float, *, device: str | None = None,
                speed: dict | None = None, batch_wait_ms: float = 10):
    """Clients of two deployments on the joined cluster: one replica, and `replicas` replicas, each
    replica on one CPU thread with the speed options `speed` (`SpeedOptions` fields)."""
    from pipeline.serving.client import RayStudio
    from pipeline.serving.cluster import deploy
    from pipeline.serving.options import ServeOptions

    base = ServeOptions(model=model, device=device, speed=dict(speed or {}), max_batch=max_batch, threads=1,
                        gpus_per_replica=gpus_per_replica, batch_wait_ms=batch_wait_ms)
    clients = []
    for count in (1, replicas):
        options = base.replace(replicas=count, app_name=f"bench-{count}-replicas")
        deploy(options)
        clients.append(RayStudio.connect(options.app_name))
    return clients


def concurrently(studio, requests) -> None:
    """Serve every request at once, each from its own thread; raise the first error."""
    errors = []

    def run(request):
        try:
            studio.generate(request)
        except Exception as error:  # noqa: BLE001 - raised below, in the bench's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def measure_serving(local, one, many, request, replicas: int, requests: int, repeat: int) -> dict:
    """Latency of the Ray hop and throughput of `replicas` replicas against one, interleaved."""
    batch = [request.replace(prompt=BATCH_PROMPTS[index % len(BATCH_PROMPTS)], seed=request.seed + index)
             for index in range(requests)]
    latency = interleaved({"local": lambda: local.generate(request), "ray": lambda: one.generate(request)}, repeat)
    throughput = interleaved({"one": lambda: concurrently(one, batch), "many": lambda: concurrently(many, batch)},
                             repeat)
    timings = {**latency, **throughput}
    return {
        "local_s": latency["local"].median, "ray_s": latency["ray"].median,
        "ray_hop_ratio": latency["ray"].median / latency["local"].median,
        "one_replica_images_per_s": requests / throughput["one"].median,
        "replicas_images_per_s": requests / throughput["many"].median,
        "throughput_ratio": throughput["one"].median / throughput["many"].median,
        "replicas": replicas, "requests": requests, "repeat": repeat,
        "replica_peak_rss_mb": max(one.describe().peak_rss_mb, many.describe().peak_rss_mb),
        "spreads": {name: timing.summary() for name, timing in timings.items()},
    }


def format_serving(results: dict, header: str) -> str:
    spreads, requests, replicas = results["spreads"], results["requests"], results["replicas"]
    rows = [
        (LABELS["local"], f"{results['local_s']:.4f} s {span(spreads['local'])}", "1.00"),
        (LABELS["ray"] + " (1 replica)", f"{results['ray_s']:.4f} s {span(spreads['ray'])}",
         f"{results['ray_hop_ratio']:.2f} x local: the Ray hop adds {results['ray_hop_ratio'] - 1:+.0%}"),
        (f"{requests} requests at once, 1 replica", f"{results['one_replica_images_per_s']:.2f} img/s "
         f"{span(spreads['one'], lambda s: requests / s, 2)}", "1.00"),
        (f"{requests} requests at once, {replicas} replicas", f"{results['replicas_images_per_s']:.2f} img/s "
         f"{span(spreads['many'], lambda s: requests / s, 2)}",
         f"{results['throughput_ratio']:.2f} x 1 replica"),
        ("replica peak RSS (model loaded)", f"{results['replica_peak_rss_mb']:.0f} MB", ""),
    ]
    labels = {**LABELS, "many": f"concurrent requests, {replicas} replicas"}
    return "\n".join([header, *table(rows, "ratio"),
                      *spread_warnings({labels[key]: summary for key, summary in spreads.items()})])
