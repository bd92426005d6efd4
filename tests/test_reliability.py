"""The served page under load and when visitors change their minds: many gradio_client visitors at
once lose no request and get no one else's picture; a full queue says so; a request cancelled while
it waits never runs; a run whose visitor cancels or goes away stops at the step it is on, and the
device serves the next visitor.

The embedded model serves in this process on 127.0.0.1 at a free port. Every wait is bounded
(WAIT_S) and none is a timing assertion. `pytest -m reliability` runs this file alone."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, Status

from helpers.pixels import assert_within_one_level
from helpers.servers import QueuedCall, endpoint_call
from helpers.studios import SpyStudio
from helpers.waiting import wait_until
from pipeline.metadata import read_settings
from pipeline.request import GenerationRequest

pytestmark = pytest.mark.reliability

WAIT_S = 120
PROMPTS = ("a large red circle on the left, blue background", "a small green square at the top, white background",
           "a big yellow triangle, right, black background", "a blue circle in the middle, grey background")


def dropped_by_the_queue(demo) -> bool:
    """Whether gradio's queue has marked every running event dead (its visitor went away)."""
    return not any(event.alive for job in demo._queue.active_jobs if job for event in job)


def test_sixteen_visitors_three_requests_each_none_lost_none_wrong(embedded, serve):
    _, url = serve(embedded)
    # Two sizes and two step counts, so that some waiting requests share a batch and some cannot.
    asked = {(visitor, k): dict(prompt=PROMPTS[(visitor + k) % len(PROMPTS)], seed=1000 * visitor + k,
                                steps=2 + (visitor % 2), width=64 if k < 2 else 96, height=64,
                                num_images=1 + (visitor % 4 == 0))
             for visitor in range(16) for k in range(3)}

    def visitor(number: int) -> dict:
        client = Client(url, verbose=False)
        got = {}
        for k in range(3):
            job = client.submit(**asked[number, k], api_name="/generate")
            got[number, k] = [item["image"] for item in job.result(timeout=WAIT_S)[0]]
        return got

    with ThreadPoolExecutor(16) as pool:
        outcomes = [pool.submit(visitor, number) for number in range(16)]
        served = {}
        for outcome in outcomes:
            served.update(outcome.result(timeout=3 * WAIT_S))
    assert set(served) == set(asked)  # none lost

    for key, fields in asked.items():
        alone = embedded.generate_batch([GenerationRequest(**fields)])[0]
        assert len(served[key]) == fields["num_images"]
        for index, path in enumerate(served[key]):
            settings = read_settings(path)
            stored = {name: settings[name] for name in ("prompt", "seed", "steps", "width", "height")}
            assert stored == {**{name: fields[name] for name in stored}, "seed": fields["seed"] + index}, key
            assert_within_one_level(path, alone.images[index])


def test_a_full_queue_is_refused_with_its_sentence(embedded, serve):
    studio = SpyStudio(embedded, max_batch=1, pause_at=1)
    _, url = serve(studio, queue_size=2)
    index, data = endpoint_call(url, "generate", prompt=PROMPTS[0], steps=2)
    running = QueuedCall(url, index, data)
    assert studio.paused.wait(WAIT_S), "the first run never started"
    waiting = [QueuedCall(url, index, data) for _ in range(2)]
    try:
        refused = [QueuedCall(url, index, data) for _ in range(3)]
        with pytest.raises(QueueError) as error:
            Client(url, verbose=False).predict(prompt=PROMPTS[0], steps=2, api_name="/generate")
    finally:
        studio.release.set()
    assert [call.refusal for call in refused] == [{"detail": "Queue is full. Max size is 2 and size is 2."}] * 3
    assert "Queue is full" in str(error.value)
    results = [call.result() for call in [running, *waiting]]
    assert [success for success, _ in results] == [True] * 3, results
    assert studio.outcomes == [("done", 2, 2)] * 3


def test_a_request_cancelled_while_it_waits_never_runs(embedded, serve):
    studio = SpyStudio(embedded, max_batch=1, pause_at=1)
    _, url = serve(studio)
    client, other = Client(url, verbose=False), Client(url, verbose=False)
    running = client.submit(prompt=PROMPTS[0], steps=8, api_name="/generate")
    assert studio.paused.wait(WAIT_S), "the first run never started"
    waiting = client.submit(prompt=PROMPTS[1], steps=8, api_name="/generate")
    dropped = other.submit(prompt=PROMPTS[2], steps=8, api_name="/generate")
    wait_until(lambda: waiting.status().code == dropped.status().code == Status.IN_QUEUE, "two requests to queue")
    try:
        # The page's Cancel for the session, and gradio_client's own cancel for the other visitor.
        assert client.predict(api_name="/cancel").endswith("run cancelled, no image was produced")
        dropped.cancel()
    finally:
        studio.release.set()
    with pytest.raises(AppError, match=r"cancelled after step 1 of 8; no image was produced"):
        running.result(timeout=WAIT_S)
    with pytest.raises(AppError, match="cancelled before it started; no image was produced"):
        waiting.result(timeout=WAIT_S)
    assert [request.prompt for request in studio.requests] == [PROMPTS[0]]  # neither waiting request ran
    assert studio.outcomes == [("cancelled", 1, 8)] and studio.steps == [1]

    # The device is free for the next visitor.
    images, *_ = Client(url, verbose=False).predict(prompt=PROMPTS[3], steps=2, api_name="/generate")
    assert studio.outcomes[-1] == ("done", 2, 2) and read_settings(images[0]["image"])["prompt"] == PROMPTS[3]


def test_a_run_cancelled_through_gradio_client_stops_at_its_step(embedded, serve):
    studio = SpyStudio(embedded, pause_at=2)
    _, url = serve(studio)
    job = Client(url, verbose=False).submit(prompt=PROMPTS[0], steps=30, api_name="/generate")
    assert studio.paused.wait(WAIT_S), "the run never reached step 2"
    try:
        job.cancel()  # gradio's /cancel route, answered once gradio has cancelled the event's task
    finally:
        studio.release.set()
    wait_until(lambda: studio.outcomes, "the run to end")
    assert studio.outcomes == [("cancelled", 2, 30)] and studio.steps == [1, 2]

    images, *_ = Client(url, verbose=False).predict(prompt=PROMPTS[1], steps=2, api_name="/generate")
    assert studio.outcomes[-1] == ("done", 2, 2) and read_settings(images[0]["image"])["prompt"] == PROMPTS[1]


def test_a_run_whose_visitor_goes_away_stops_at_its_step(embedded, serve):
    studio = SpyStudio(embedded, pause_at=2)
    demo, url = serve(studio)
    index, data = endpoint_call(url, "generate", prompt=PROMPTS[0], steps=30)
    call = QueuedCall(url, index, data)
    call.wait_for("process_starts")
    assert studio.paused.wait(WAIT_S), "the run never reached step 2"
    try:
        call.close()  # the tab is closed
        wait_until(lambda: dropped_by_the_queue(demo), "gradio to see the visitor leave", timeout_s=60)
    finally:
        studio.release.set()
    wait_until(lambda: studio.outcomes, "the run to end")
    assert studio.outcomes == [("cancelled", 2, 30)] and studio.steps == [1, 2]

    images, *_ = Client(url, verbose=False).predict(prompt=PROMPTS[1], steps=2, api_name="/generate")
    assert studio.outcomes[-1] == ("done", 2, 2) and read_settings(images[0]["image"])["prompt"] == PROMPTS[1]
