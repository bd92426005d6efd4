"""How the studio is deployed on Ray Serve: replicas or autoscaling bounds, GPUs and CPUs per replica,
the batch size, and the Serve config YAML that `serve deploy` takes for the same deployment."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

APP_NAME = "studio"
DEPLOYMENT_NAME = "Studio"
BUILDER = "pipeline.serving.deployment:build"


@dataclass(frozen=True)
class ServeOptions:
    """One deployment of the studio. `replicas` fixes the count; `min_replicas` and `max_replicas`
    (both given) let Serve scale between them with the number of requests in flight."""

    model: str = "embedded"
    device: str | None = None  # None: cuda when the replica has a GPU, else cpu
    speed: dict = field(default_factory=dict)  # `speed.SpeedOptions` fields, JSON-ready for the YAML
    replicas: int | None = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    gpus_per_replica: float = 0
    cpus_per_replica: float = 1
    max_batch: int = 4
    # How long the first request reaching an idle replica waits for others to share its batch: a
    # longer wait forms fuller batches under load and delays a lone request by as much.
    batch_wait_ms: float = 10
    threads: int | None = None  # torch CPU threads per replica; None leaves torch's default
    app_name: str = APP_NAME

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max batch must be at least 1, got {self.max_batch}")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ValueError(f"batch wait must be from 0 to 1000 ms, got {self.batch_wait_ms:g}")
        if self.gpus_per_replica < 0 or self.cpus_per_replica < 0:
            raise ValueError("GPUs and CPUs per replica cannot be negative")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads per replica must be at least 1, got {self.threads}")
        if self.autoscaling:
            if self.min_replicas is None or self.max_replicas is None:
                raise ValueError("give both --min-replicas and --max-replicas to scale with demand")
            if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
                raise ValueError(f"replicas must scale within 0 <= min <= max and max >= 1, got min "
                                 f"{self.min_replicas} and max {self.max_replicas}")
        elif self.replicas is None or self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None

    @property
    def most_replicas(self) -> int:
        return self.max_replicas if self.autoscaling else self.replicas

    def deployment_options(self) -> dict:
        """The Serve deployment's options, as `Deployment.options` and the YAML's `deployments` take them."""
        if self.autoscaling:
            # A replica with a full batch in flight counts as busy: more waiting requests add replicas.
            scaling = {"autoscaling_config": {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                              "target_ongoing_requests": self.max_batch}}
        else:
            scaling = {"num_replicas": self.replicas}
        return {**scaling,
                # Room for one batch running and the next one forming behind it.
                "max_ongoing_requests": 2 * self.max_batch,
                "ray_actor_options": {"num_gpus": self.gpus_per_replica, "num_cpus": self.cpus_per_replica}}

    def builder_args(self) -> dict:
        """What each replica needs to load its studio (`deployment.build`'s `args`)."""
        return {"model": self.model, "device": self.device, "speed": dict(self.speed), "max_batch": self.max_batch,
                "batch_wait_ms": self.batch_wait_ms, "threads": self.threads,
                "capacity": self.max_batch * self.most_replicas}

    def config(self) -> dict:
        """The Serve config (`serve deploy FILE`) of this deployment."""
        return {"proxy_location": "Disabled",
                "applications": [{"name": self.app_name, "route_prefix": None, "import_path": BUILDER,
                                  "args": self.builder_args(),
                                  "deployments": [{"name": DEPLOYMENT_NAME, **self.deployment_options()}]}]}

    def replace(self, **changes) -> ServeOptions:
        return ServeOptions(**{**asdict(self), **changes})
