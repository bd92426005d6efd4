"""Requests from many threads: what waits for the device together is served as one forward batch,
and each caller keeps its own image, progress, cancellation and errors."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from helpers.waiting import wait_until
from pipeline.batching import BatchingQueue
from pipeline.request import CANCEL, GenerationCancelled, GenerationFailed, GenerationRequest
from pipeline.studio import Studio

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


def test_a_failed_output_fails_only_its_own_request():
    def run(requests, on_step):
        if any(item.prompt == "collapses" for item in requests):
            raise GenerationFailed("image 1 decoded to an all-black picture")
        return [f"picture of {item.prompt}" for item in requests]

    recorder = Recorder(run, lambda: queue.waiting, 2)
    queue = BatchingQueue(recorder, max_batch=4)
    outcomes = serve_together(queue.submit, lambda: queue.waiting, recorder,
                              [request("first", 1), request("collapses", 2), request("fine", 3)])
    assert recorder.batches == [["first"], ["collapses", "fine"], ["collapses"], ["fine"]]
    assert outcomes[0] == "picture of first" and outcomes[2] == "picture of fine"
    assert isinstance(outcomes[1], GenerationFailed) and "all-black" in str(outcomes[1])


def test_a_bad_request_fails_alone_before_it_queues(sana):
    with pytest.raises(ValueError, match=r"width must be a multiple of 32 for this model, got 33 \(nearest: 32\)"):
        sana.generate(GenerationRequest(prompt="a cat", width=33, height=32))
    assert sana.waiting == 0
    with pytest.raises(ValueError, match="batch size must be at least 1, got 0"):
        BatchingQueue(lambda requests, on_step: [], max_batch=0)
