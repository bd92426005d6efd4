"""The studio on Ray Serve: a real local cluster (two CPUs, 127.0.0.1, no dashboard), the embedded model
on two replicas. Concurrent requests arrive with the local studio's pixels and settings, batched by
`@serve.batch`; deliverables and campaigns rendered on a replica have the local studio's files; a
replica killed mid-run loses no request silently and is replaced; the page on the Ray back end shows
progress and cancels one visitor's request only. Every wait is bounded (WAIT_S);
none is a timing assertion."""
from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from helpers.pixels import assert_within_one_level, largest_difference, levels
from helpers.ray_cluster import local_cluster, replica_descriptions, replicas
from helpers.servers import QueuedCall, app_process, endpoint_call
from helpers.waiting import wait_until
from pipeline import campaign, deliverables
from pipeline.brand import ColourReference
from pipeline.metadata import read_settings, request_from_settings, save_png
from pipeline.postprocess import PostprocessSettings
from pipeline.request import CANCEL, GenerationCancelled, GenerationFailed, GenerationRequest, GenerationResult
from pipeline.serving.client import REPLICA_LOST, RayStudio
from pipeline.serving.events import Started, Step
from pipeline.serving.options import ServeOptions
from ui.engine import Engine

WAIT_S = 180
PROMPTS = ("a large red circle on the left, blue background", "a small green square at the top, white background",
           "a big yellow triangle, right, black background", "a blue circle in the middle, grey background")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(num_cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def deployed(cluster) -> RayStudio:
    from pipeline.serving.cluster import deploy

    # One CPU thread per replica, as the test process computes the local studio's pictures.
    deploy(ServeOptions(model="embedded", replicas=2, threads=1, max_batch=4))
    return RayStudio.connect()


def run_all(studio, requests, options: dict | None = None) -> list:
    """Each request's result or error, every request sent at once from its own thread; `options`:
    request index -> keyword arguments of its `generate` call."""
    outcomes = [None] * len(requests)

    def run(index):
        try:
            outcomes[index] = studio.generate(requests[index], **(options or {}).get(index, {}))
        except Exception as error:  # noqa: BLE001 - recorded for the test to check
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(thread.is_alive() for thread in threads), "a request was still waiting after the bound"
    return outcomes


class Unreachable:
    def __getattr__(self, name):
        raise AssertionError(f"the request left the process ({name})")


def test_the_deployment_describes_the_model_and_bad_values_stay_here(deployed, embedded, monkeypatch):
    assert isinstance(deployed, Engine)
    assert (deployed.limits, deployed.modes) == (embedded.limits, embedded.modes)
    assert (deployed.source.reference, deployed.family.pipeline_class) == ("embedded", "SanaPipeline")
    assert deployed.max_batch == 8  # two replicas of four
    monkeypatch.setattr(deployed, "handle", Unreachable())
    for fields in ({"steps": 51}, {"width": 70}, {"guidance": 11.0}):
        with pytest.raises(ValueError) as local:
            embedded.generate(GenerationRequest(prompt=PROMPTS[0], **fields))
        with pytest.raises(ValueError) as remote:
            deployed.generate(GenerationRequest(prompt=PROMPTS[0], **fields))
        assert str(remote.value) == str(local.value)


def test_twelve_concurrent_requests_match_the_local_studio(deployed, embedded, tmp_path):
    requests = [GenerationRequest(prompt=PROMPTS[index % 4], seed=100 + index) for index in range(12)]
    results = run_all(deployed, requests)
    assert all(isinstance(result, GenerationResult) for result in results), results
    for index, (request, result) in enumerate(zip(requests, results)):
        path = save_png(result.images[0], result.settings[0], tmp_path / f"{index}.png")
        rebuilt, image_index = request_from_settings(read_settings(path))
        assert (rebuilt, image_index) == (embedded.resolve(request), 0)
        assert_within_one_level(path, embedded.generate(rebuilt).images[0])
    assert max(deployed.batch_sizes) > 1, deployed.batch_sizes
    assert len(deployed.batch_sizes) == 12


def test_a_batch_runs_only_compatible_requests_together_each_with_its_own_progress(deployed, embedded):
    requests = [GenerationRequest(prompt=PROMPTS[index % 4], seed=400 + index, steps=3 if index % 2 else 6)
                for index in range(12)]
    steps = {index: [] for index in range(12)}
    options = {index: {"on_step": lambda step, total, index=index: steps[index].append((step, total))}
               for index in range(12)}
    first = len(deployed.batch_sizes)
    results = run_all(deployed, requests, options)
    assert all(isinstance(result, GenerationResult) for result in results), results
    for index, (request, result) in enumerate(zip(requests, results)):
        assert steps[index] == [(step, request.steps) for step in range(1, request.steps + 1)]
        assert_within_one_level(result.images[0], embedded.generate(request).images[0])
    served = list(zip(deployed.batch_sizes[first:], deployed.group_sizes[first:]))
    # Some `@serve.batch` call held both step counts and split them into two forward batches.
    assert any(group < batch for batch, group in served), served


def test_one_requests_bad_file_fails_only_that_request_in_the_engines_words(deployed, embedded, tmp_path):
    bad = GenerationRequest(prompt=PROMPTS[0], seed=500, postprocess=PostprocessSettings(
        color="reference", color_reference=str(tmp_path / "gone.png")))
    with pytest.raises(ValueError) as local:
        embedded.generate(bad)
    requests = [GenerationRequest(prompt=PROMPTS[index % 4], seed=501 + index) for index in range(5)]
    outcomes = run_all(deployed, [*requests[:2], bad, *requests[2:]])
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == str(local.value)
    assert all(isinstance(outcome, GenerationResult) for outcome in outcomes[:2] + outcomes[3:]), outcomes


def test_live_previews_come_from_the_replica_as_the_local_studio_makes_them(deployed, embedded):
    assert deployed.previews == embedded.previews is True
    request = GenerationRequest(prompt=PROMPTS[2], seed=700, steps=6)
    remote, local = [], []
    result = deployed.generate(request, on_preview=lambda *preview: remote.append(preview), preview_every=2)
    expected = embedded.generate(request, on_preview=lambda *preview: local.append(preview), preview_every=2)
    assert [(step, total) for step, total, _ in remote] == [(step, total) for step, total, _ in local] == [
        (2, 6), (4, 6)]
    for (_, _, pictures), (_, _, expected_pictures) in zip(remote, local):
        assert len(pictures) == 1 and largest_difference(pictures[0], expected_pictures[0]) == 0
    assert largest_difference(result.images[0], expected.images[0]) == 0
    with pytest.raises(ValueError, match="preview_every must be a whole number of steps, at least 1; got 0"):
        deployed.generate(request, on_preview=print, preview_every=0)


# A kit's colour statistics and post-processing, which travel to the replica with each deliverable.
KIT_COLOUR = ColourReference("kit.png", "0" * 64, (0.7, 0.35, 0.2), (0.2, 0.15, 0.1), strength=0.8)
KIT_POST = PostprocessSettings(denoise=0.3, color="auto", color_strength=0.5)


def test_deliverables_from_the_replica_match_the_local_studios(deployed, embedded):
    request = GenerationRequest(prompt=PROMPTS[0], seed=800, steps=4, postprocess=KIT_POST)
    remote_keys, local_keys, remote_steps, local_steps = {}, {}, [], []
    for key, size in (("link", (1200, 628)), ("landscape", (1600, 900))):
        remote = deployed.deliverable(request, key, colour=KIT_COLOUR, keys=remote_keys,
                                      on_step=lambda step, total: remote_steps.append((key, step, total)))
        local = embedded.deliverable(request, key, colour=KIT_COLOUR, keys=local_keys,
                                     on_step=lambda step, total: local_steps.append((key, step, total)))
        assert remote.image.size == remote.original.size == size
        # The replica computes every stage, so its pixels are the local studio's exactly.
        assert largest_difference(remote.image, local.image) == 0
        assert largest_difference(remote.original, local.original) == 0
        assert remote.settings == local.settings
    # Both share one 72x48 key visual: drawn once, then sent back to the replica for the second.
    assert list(remote_keys) == list(local_keys) and len(remote_keys) == 1
    # Each step of the key visual and the extend steps, in order, as the local studio reports them.
    assert remote_steps == local_steps and remote_steps[:4] == [("link", step, 4) for step in range(1, 5)]
    assert {key for key, *_ in remote_steps[4:]} == {"link", "landscape"}


def test_a_campaign_through_the_replicas_writes_the_local_files_and_manifest(deployed, embedded, tmp_path):
    request = GenerationRequest(prompt=PROMPTS[1], seed=810, steps=3, postprocess=KIT_POST)
    jobs = [campaign.Job(f"{key}-810.png", 2, deliverables.parse(key), request, colour=KIT_COLOUR, idea=PROMPTS[1],
                         idea_line=2) for key in ("link", "medium-rectangle")]
    made = []
    rows, errors = campaign.run(deployed, jobs, tmp_path / "ray", on_file=lambda done, total, path: made.append(path))
    expected, _ = campaign.run(embedded, jobs, tmp_path / "local")
    assert errors == [] and rows == expected and made == [tmp_path / "ray" / job.file for job in jobs]
    campaign.write_manifest(rows, tmp_path / "ray" / campaign.MANIFEST_NAME)
    with open(tmp_path / "ray" / campaign.MANIFEST_NAME, encoding="utf-8", newline="") as file:
        assert [row["file"] for row in csv.DictReader(file)] == ["link-810.png", "medium-rectangle-810.png"]
    for job in jobs:
        assert levels(tmp_path / "ray" / job.file).shape == (job.deliverable.height, job.deliverable.width, 3)
        assert largest_difference(tmp_path / "ray" / job.file, tmp_path / "local" / job.file) == 0
        assert read_settings(tmp_path / "ray" / job.file) == read_settings(tmp_path / "local" / job.file)


def test_a_cancelled_deliverable_stops_on_the_replica_and_bad_values_stay_here(deployed, embedded, monkeypatch):
    import ui

    # Four extend steps of 50 denoising steps each: the cancel reaches the replica long before the end.
    request = GenerationRequest(prompt=PROMPTS[2], seed=820, steps=50)
    with pytest.raises(GenerationCancelled, match="cancelled after step 3 of 50"):
        deployed.deliverable(request, "leaderboard", on_step=lambda step, total: CANCEL if step == 3 else None)

    def dropped():
        return [record for description in replica_descriptions(deployed, 2).values()
                for record in description.dropped if record[0] == 820]

    # The replica stopped the render at a step of its key visual, long before the last of its four.
    wait_until(dropped, "the replica to drop the cancelled render", timeout_s=WAIT_S, poll_s=0.5)
    records = dropped()
    assert len(records) == 1 and records[0][1] < 50 and records[0][2] == 50, records

    monkeypatch.setattr(deployed, "handle", Unreachable())
    for bad, options in ((request, {"fit": "stretch"}), (request.replace(width=64), {}),
                         (request, {"anchor": "middle"}), (request.replace(num_images=2), {})):
        with pytest.raises(ValueError) as local:
            embedded.deliverable(bad, "square", **options)
        with pytest.raises(ValueError) as remote:
            deployed.deliverable(bad, "square", **options)
        assert str(remote.value) == str(local.value)
    # The page offers its Deliverables panel on this back end too.
    assert "make-deliverables" in {block.elem_id for block in ui.build_demo(deployed).blocks.values()}


class LostReplica:
    """A deployment handle whose replica dies after `steps` steps of a streamed deliverable."""

    def __init__(self, steps: int):
        self.steps = steps

    def options(self, stream: bool):
        return self

    @property
    def deliverable(self):
        return self

    def remote(self, *arguments):
        import ray

        yield Started("replica")
        for step in range(1, self.steps + 1):
            yield Step(step, 4)
        raise ray.exceptions.ActorDiedError()


def test_a_deliverable_whose_replica_stops_fails_in_one_sentence(deployed, monkeypatch):
    steps = []
    monkeypatch.setattr(deployed, "handle", LostReplica(2))
    with pytest.raises(GenerationFailed) as failed:
        deployed.deliverable(GenerationRequest(prompt=PROMPTS[0]), "square", on_step=lambda *step: steps.append(step))
    assert str(failed.value) == REPLICA_LOST and steps == [(1, 4), (2, 4)]


def test_a_killed_replica_loses_no_request_silently_and_is_replaced(deployed):
    import ray

    started, stepped = {}, threading.Event()
    # Large enough that each run lasts seconds, so the replica dies mid-run.
    requests = [GenerationRequest(prompt=PROMPTS[index % 4], seed=200 + index, steps=50, width=128, height=128)
                for index in range(6)]
    options = {index: {"on_start": lambda replica, index=index: started.__setitem__(index, replica),
                       "on_step": lambda step, total: stepped.set()} for index in range(6)}
    outcomes, runner = [], threading.Thread(target=lambda: outcomes.extend(run_all(deployed, requests, options)))
    runner.start()
    assert stepped.wait(WAIT_S), "no request started denoising"
    victim = started[min(started)]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    runner.join(WAIT_S)
    assert not runner.is_alive() and len(outcomes) == 6
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, GenerationResult):
            assert outcome.settings[0]["seed"] == 200 + index
        else:
            assert isinstance(outcome, GenerationFailed) and str(outcome) == REPLICA_LOST, outcome
    lost = [index for index, replica in started.items() if replica == victim]
    assert any(isinstance(outcomes[index], GenerationFailed) for index in lost)

    wait_until(lambda: replicas().get("RUNNING") == 2 and victim not in replica_names(deployed),
               "Serve to replace the killed replica", timeout_s=WAIT_S, poll_s=1)
    after = run_all(deployed, [GenerationRequest(prompt=PROMPTS[index], seed=300 + index) for index in range(4)])
    assert all(isinstance(result, GenerationResult) for result in after), after


def replica_names(studio) -> set[str]:
    return set(replica_descriptions(studio, 2))


@pytest.fixture(scope="module")
def page(deployed, serve):
    return serve(deployed)[1]


def test_the_page_shows_the_replicas_images_and_progress(page, deployed, embedded):
    fn_index, data = endpoint_call(page, "generate", prompt=PROMPTS[1], seed=11, steps=4)
    call = QueuedCall(page, fn_index, data, timeout_s=WAIT_S)
    progress = call.wait_for("progress")
    assert progress["progress_data"][0]["desc"].startswith("step ") and progress["progress_data"][0]["length"] == 4
    success, output = call.result()
    assert success, output
    path = output["data"][0][0]["image"]["path"]
    settings = read_settings(path)
    assert (settings["prompt"], settings["seed"], settings["steps"]) == (PROMPTS[1], 11, 4)
    # Served alone, the replica's pixels reach the page exactly as the local studio makes them.
    assert deployed.batch_sizes[-1] == 1
    assert largest_difference(path, embedded.generate(request_from_settings(settings)[0]).images[0]) == 0


def test_cancel_stops_only_that_visitors_request(page, deployed):
    first, second = Client(page, verbose=False), Client(page, verbose=False)
    # Large enough that each run lasts seconds, so the cancel reaches the replica mid-run.
    size = dict(width=128, height=128, steps=50)
    cancelled = first.submit(prompt=PROMPTS[0], seed=21, api_name="/generate", **size)
    kept = second.submit(prompt=PROMPTS[2], seed=22, api_name="/generate", **size)
    wait_until(lambda: cancelled.status().progress_data, "the first run to report a step", timeout_s=WAIT_S)
    assert first.predict(api_name="/cancel").endswith("run cancelled, no image was produced")
    with pytest.raises(AppError, match=r"cancelled after step \d+ of 50; no image was produced"):
        cancelled.result(timeout=WAIT_S)
    images = kept.result(timeout=WAIT_S)[0]
    assert read_settings(images[0]["image"])["steps"] == 50
    # The replica dropped the cancelled request between two steps, before its last one.
    dropped = [record for description in replica_descriptions(deployed, 2).values()
               for record in description.dropped if record[0] == 21]
    assert len(dropped) == 1 and dropped[0][1] < 50, dropped


def test_app_py_on_the_ray_backend(cluster, deployed, embedded, tmp_path):
    with app_process(tmp_path / "app.log", WAIT_S, "--backend", f"ray={cluster}") as url:
        images, _, seed, status = Client(url, verbose=False).predict(prompt=PROMPTS[3], seed=31, steps=3,
                                                                     api_name="/generate")
    settings = read_settings(images[0]["image"])
    assert (seed, settings["seed"], settings["steps"], settings["model"]) == (31, 31, 3, "embedded")
    assert "cpu (Ray Serve)" in status
    assert_within_one_level(images[0]["image"], embedded.generate(request_from_settings(settings)[0]).images[0])
    assert "on the Ray cluster at" in Path(tmp_path / "app.log").read_text()


def test_bench_times_the_ray_hop_and_the_replicas(deployed, embedded):
    from pipeline.benchmark.serving import format_serving, measure_serving

    request = embedded.resolve(GenerationRequest(prompt=PROMPTS[0], seed=600, steps=2))
    results = measure_serving(embedded, deployed, deployed, request, replicas=2, requests=3, repeat=2)
    assert results["ray_hop_ratio"] == results["ray_s"] / results["local_s"]
    assert results["throughput_ratio"] == pytest.approx(
        results["replicas_images_per_s"] / results["one_replica_images_per_s"])
    assert set(results["spreads"]) == {"local", "ray", "one", "many"}
    assert results["replica_peak_rss_mb"] > 100  # the embedded model is loaded in the replica
    table = format_serving(results, "header")
    assert "3 requests at once, 2 replicas" in table and "x local: the Ray hop adds" in table
