"""`python -m pipeline serve`'s options and the Serve config it writes, with no cluster started."""
from __future__ import annotations

import pytest
import yaml

from pipeline.commands import main
from pipeline.serving.options import ServeOptions


def test_write_config_is_a_serve_config_of_the_same_deployment(tmp_path, capsys):
    from ray.serve.schema import ServeDeploySchema

    path = tmp_path / "serve.yaml"
    assert main(["serve", "--model", "embedded", "--min-replicas", "1", "--max-replicas", "3",
                 "--gpus-per-replica", "0.5", "--max-batch", "2", "--batch-wait-ms", "0", "--write-config",
                 str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {path}; deploy it with: serve deploy {path}"
    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    [application] = config.applications
    assert (application.name, application.import_path, application.route_prefix) == (
        "studio", "pipeline.serving.deployment:build", None)
    assert application.args["model"] == "embedded" and application.args["max_batch"] == 2
    assert application.args["batch_wait_ms"] == 0
    assert application.args["capacity"] == 6  # batches of 2 on up to 3 replicas
    [deployment] = application.deployments
    assert deployment.autoscaling_config == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2}
    assert (deployment.ray_actor_options.num_gpus, deployment.max_ongoing_requests) == (0.5, 4)


def test_a_fixed_replica_count():
    options = ServeOptions(replicas=2, max_batch=4).deployment_options()
    assert options["num_replicas"] == 2 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_gpus": 0, "num_cpus": 1}


@pytest.mark.parametrize("args, message", [
    (["--replicas", "2", "--max-replicas", "3"], "give either --replicas or --min-replicas and --max-replicas, "
                                                  "not both"),
    (["--max-replicas", "3"], "give both --min-replicas and --max-replicas to scale with demand"),
    (["--min-replicas", "3", "--max-replicas", "2"], "replicas must scale within 0 <= min <= max and max >= 1, "
                                                      "got min 3 and max 2"),
    (["--replicas", "0"], "replicas must be at least 1, got 0"),
    (["--max-batch", "0"], "max batch must be at least 1, got 0"),
    (["--batch-wait-ms", "-1"], "batch wait must be from 0 to 1000 ms, got -1"),
])
def test_bad_options_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(["serve", *args, "--write-config", str(tmp_path / "serve.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "serve.yaml").exists()


def test_app_backend_flag_and_environment(monkeypatch, capsys):
    import app

    assert app.parse_args([]).backend == ("local", None)
    assert app.parse_args(["--backend", "ray"]).backend == ("ray", "auto")
    monkeypatch.setenv("BACKEND", "ray=10.0.0.5:6379")
    assert app.parse_args([]).backend == ("ray", "10.0.0.5:6379")
    assert app.parse_args(["--backend", "ray=ray://10.0.0.5:10001"]).backend == ("ray", "ray://10.0.0.5:10001")
    assert app.main(["--backend", "gpu"]) == 2
    assert capsys.readouterr().err.strip().endswith("backend must be local, ray or ray=ADDRESS, got 'gpu'")


def test_the_content_gate_stays_with_the_model(monkeypatch, capsys):
    import app

    monkeypatch.delenv("BACKEND", raising=False)
    assert app.main(["--backend", "ray=127.0.0.1:1", "--safety"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the content gate and the watermark run where the model runs; with --backend ray leave --safety "
        "and --watermark off (--no-safety)")
