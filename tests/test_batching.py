"""Requests from many threads: what waits for the device together is served as one forward batch,
and each caller keeps its own image, progress, cancellation and errors."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

import pipeline.postprocess.chain as chain_module
from helpers.waiting import wait_until
from pipeline.batching import BatchingQueue
from pipeline.postprocess import PostprocessSettings
from pipeline.request import (CANCEL, BatchPartlyFailed, GenerationCancelled, GenerationFailed, GenerationRequest,
                              GenerationResult)
from pipeline.studio import Studio
from test_postprocess_upscaler import tiny_esrgan

WAIT_S = 60  # upper bound of the joins below; none is a timing assertion


class Recorder:
    """Wraps a batch runner: records each batch's prompts and the steps its run reported. The first
    batch holds until `queued` more requests wait behind it, so that they are served together next."""

    def __init__(self, run, waiting, queued: int):
        self.run, self.waiting, self.queued = run, waiting, queued
        self.batches, self.steps = [], []
        self.started = threading.Event()

    def __call__(self, requests, on_step=None):
        self.batches.append([request.prompt for request in requests])
        steps = []
        self.steps.append(steps)
        if len(self.batches) == 1:
            self.started.set()
            wait_until(lambda: self.waiting() == self.queued, f"{self.queued} requests to queue")

        def record(step, total):
            steps.append(step)
            return on_step(step, total)

        return self.run(requests, record)


def record_batches(studio: Studio, queued: int, monkeypatch) -> Recorder:
    recorder = Recorder(studio.generate_batch, lambda: studio.waiting, queued)
    monkeypatch.setattr(studio, "generate_batch", recorder)
    return recorder


def serve_together(submit, waiting, recorder: Recorder, requests: list, callbacks=None) -> list:
    """`submit(request, on_step)` for each request from its own thread: the first starts, the others
    queue behind it in order. Returns each call's result, or the exception it raised."""
    callbacks = callbacks or [None] * len(requests)
    outcomes: list = [None] * len(requests)

    def call(index: int):
        try:
            outcomes[index] = submit(requests[index], callbacks[index])
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcomes[index] = error

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(requests))]
    for index, thread in enumerate(threads):
        thread.start()
        if index == 0:
            assert recorder.started.wait(WAIT_S), "the first request never started"
        else:
            wait_until(lambda: waiting() == index, f"request {index} to queue")
    for thread in threads:
        thread.join(WAIT_S)
    return outcomes


def request(prompt: str, seed: int, steps: int = 2) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, steps=steps, width=32, height=32)


def difference(result, alone) -> int:
    """Largest per-channel difference, in levels of 255, between two results' first images."""
    return int(np.abs(np.asarray(result.images[0], dtype=int) - np.asarray(alone.images[0], dtype=int)).max())


def test_requests_waiting_together_run_as_one_batch(sana, monkeypatch):
    requests = [request("a red circle", 1), request("a blue square", 2), request("a green triangle", 3)]
    alone = [sana.generate(item) for item in requests]
    recorder = record_batches(sana, 2, monkeypatch)
    outcomes = serve_together(sana.generate, lambda: sana.waiting, recorder, requests)
    assert recorder.batches == [["a red circle"], ["a blue square", "a green triangle"]]
    for item, outcome, single in zip(requests, outcomes, alone):
        assert difference(outcome, single) <= 1
        assert outcome.settings[0]["seed"] == item.seed and outcome.settings[0]["prompt"] == item.prompt


def test_only_compatible_requests_share_a_batch_up_to_the_limit(tiny_folder, monkeypatch):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu", max_batch=2)
    requests = [request("a", 1), request("b", 2), request("c", 3, steps=3), request("d", 4), request("e", 5)]
    recorder = record_batches(studio, 4, monkeypatch)
    outcomes = serve_together(studio.generate, lambda: studio.waiting, recorder, requests)
    # Oldest waiting first, with what is compatible (same steps, guidance, size), at most two.
    assert recorder.batches == [["a"], ["b", "d"], ["c"], ["e"]]
    assert [outcome.settings[0]["steps"] for outcome in outcomes] == [2, 2, 3, 2, 2]


def test_cancel_inside_a_batch_drops_only_that_request(sana, monkeypatch):
    requests = [request("a red circle", 1, 3), request("a blue square", 2, 3), request("a green triangle", 3, 3)]
    alone = sana.generate(requests[2])
    seen = {1: [], 2: []}

    def cancel_at_first_step(step, total):
        seen[1].append(step)
        return CANCEL

    recorder = record_batches(sana, 2, monkeypatch)
    outcomes = serve_together(sana.generate, lambda: sana.waiting, recorder, requests,
                              [None, cancel_at_first_step, lambda step, total: seen[2].append((step, total))])
    assert recorder.batches[1] == ["a blue square", "a green triangle"]
    assert isinstance(outcomes[1], GenerationCancelled)
    assert str(outcomes[1]) == "cancelled after step 1 of 3; no image was produced"
    assert seen == {1: [1], 2: [(1, 3), (2, 3), (3, 3)]}
    assert difference(outcomes[2], alone) <= 1


def test_a_batch_whose_callers_all_cancel_stops(sana, monkeypatch):
    requests = [request("a", 1, 2), request("b", 2, 6), request("c", 3, 6)]
    recorder = record_batches(sana, 2, monkeypatch)
    outcomes = serve_together(sana.generate, lambda: sana.waiting, recorder, requests,
                              [None, lambda step, total: CANCEL if step == 1 else None,
                               lambda step, total: CANCEL if step == 2 else None])
    assert recorder.steps[1] == [1, 2]  # the run stopped once no caller wanted it, not at step 6
    assert [str(outcome) for outcome in outcomes[1:]] == [
        "cancelled after step 1 of 6; no image was produced", "cancelled after step 2 of 6; no image was produced"]


@pytest.mark.parametrize("error", [
    GenerationFailed("image 1 decoded to an all-black picture"),
    RuntimeError("CUDA out of memory"),
    ValueError("color_reference: cannot read 'brand.png' as an image"),
])
def test_a_failed_batch_is_served_again_one_request_at_a_time(error):
    def run(requests, on_step):
        if any(item.prompt == "fails" for item in requests):
            raise error
        return [f"picture of {item.prompt}" for item in requests]

    recorder = Recorder(run, lambda: queue.waiting, 2)
    queue = BatchingQueue(recorder, max_batch=4)
    outcomes = serve_together(queue.submit, lambda: queue.waiting, recorder,
                              [request("first", 1), request("fails", 2), request("fine", 3)])
    assert recorder.batches == [["first"], ["fails", "fine"], ["fails"], ["fine"]]
    assert outcomes[0] == "picture of first" and outcomes[2] == "picture of fine"
    assert outcomes[1] is error


def test_a_request_cancelled_in_a_failed_batch_is_not_served_again():
    def run(requests, on_step):
        on_step(1, 2)
        if len(requests) > 1:
            raise RuntimeError("the batch failed after its first step")
        return [f"picture of {item.prompt}" for item in requests]

    recorder = Recorder(run, lambda: queue.waiting, 2)
    queue = BatchingQueue(recorder, max_batch=4)
    outcomes = serve_together(queue.submit, lambda: queue.waiting, recorder,
                              [request("first", 1), request("cancelled", 2), request("fine", 3)],
                              [None, lambda step, total: CANCEL, None])
    assert recorder.batches == [["first"], ["cancelled", "fine"], ["fine"]]
    assert str(outcomes[1]) == "cancelled after step 1 of 2; no image was produced"
    assert outcomes[2] == "picture of fine"


def test_a_file_gone_bad_in_a_batch_fails_only_its_own_request(sana, tmp_path, monkeypatch):
    """Two requests name files that were fine when they were validated and are not when their batch
    runs: a colour reference cut short and a learned upscaler overwritten with junk. Each gets its
    own sentence, naming the file without the server's folders; the valid request gets its image."""
    reference, upscaler = tmp_path / "brand.png", tiny_esrgan(tmp_path / "sr.safetensors", scale=2)
    Image.new("RGB", (64, 48), (200, 40, 40)).save(reference)
    requests = [request("first", 1),
                request("bad reference", 2).replace(postprocess=PostprocessSettings(
                    color="reference", color_reference=str(reference))),
                request("junk upscaler", 3).replace(postprocess=PostprocessSettings(upscale=2, upscaler=str(upscaler))),
                request("valid", 4)]
    alone = sana.generate(requests[3])
    recorder = record_batches(sana, 3, monkeypatch)

    def spoil_then_run(batch, on_step=None):
        if len(recorder.batches) == 1:  # the second batch: its files were read when each request was validated
            reference.write_bytes(reference.read_bytes()[:60])
            upscaler.write_bytes(b"junk" * 100)
        return recorder(batch, on_step)

    monkeypatch.setattr(sana, "generate_batch", spoil_then_run)
    outcomes = serve_together(sana.generate, lambda: sana.waiting, recorder, requests)
    assert recorder.batches == [["first"], ["bad reference", "junk upscaler", "valid"]]
    assert isinstance(outcomes[0], GenerationResult) and isinstance(outcomes[3], GenerationResult)
    assert difference(outcomes[3], alone) <= 1
    assert isinstance(outcomes[1], ValueError) and isinstance(outcomes[2], ValueError)
    assert str(outcomes[1]).startswith("color_reference: cannot read 'brand.png' as an image")
    assert str(outcomes[2]).startswith("upscaler: cannot read 'sr.safetensors'")
    assert not any(str(tmp_path) in str(outcome) for outcome in outcomes[1:3])


def test_a_failing_post_processing_stage_fails_only_its_own_request(sana, monkeypatch):
    def broken_palette(image, palette, strength):
        raise RuntimeError("the palette stage broke")

    monkeypatch.setattr(chain_module, "match_palette", broken_palette)
    requests = [request("a red circle", 1).replace(postprocess=PostprocessSettings(
                    color="palette", color_palette=("#102030",))),
                request("a blue square", 2).replace(postprocess=PostprocessSettings(color="auto"))]
    forwards = []
    hook = sana.pipe.transformer.register_forward_hook(lambda *args: forwards.append(1))
    try:
        with pytest.raises(BatchPartlyFailed, match="^1 of 2 requests failed: request 1: the palette stage") as error:
            sana.generate_batch(requests)
    finally:
        hook.remove()
    assert len(forwards) == 2  # one forward batch of two steps: the images were made once, together
    failed, served = error.value.outcomes
    assert isinstance(failed, RuntimeError)
    assert served.images[0].size == (32, 32) and served.settings[0]["postprocess"]["color"] == "auto"


def test_a_bad_request_fails_alone_before_it_queues(sana):
    with pytest.raises(ValueError, match=r"width must be a multiple of 32 for this model, got 33 \(nearest: 32\)"):
        sana.generate(GenerationRequest(prompt="a cat", width=33, height=32))
    assert sana.waiting == 0
    with pytest.raises(ValueError, match="batch size must be at least 1, got 0"):
        BatchingQueue(lambda requests, on_step: [], max_batch=0)
