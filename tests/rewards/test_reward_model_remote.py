"""`reward_model` with `url:` (rewards/models/remote.py): the same scores as the local model through the project's
own server, and the client's silence deadline, retries and one-line errors."""
from __future__ import annotations

import socket
import threading

import pytest

from rewards import RewardError, RewardScorer, get_reward
from tests.rewards.test_reward_model import COMPLETIONS, PROMPTS, rm_dir  # noqa: F401 (the fixture)


@pytest.fixture(scope="module")
def server_url(rm_dir):  # noqa: F811
    from rewards.models.remote import make_server
    server = make_server(rm_dir, port=0, batch_size=3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/score"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("params", [{"mode": "whole"}, {"mode": "after_think"}, {"normalize": True},
                                    {"mode": "whole", "batch_size": 1}])
def test_served_scores_equal_the_local_models(rm_dir, server_url, params):  # noqa: F811
    local = get_reward("reward_model", model=rm_dir, **params)(COMPLETIONS, prompts=PROMPTS)
    remote = get_reward("reward_model", url=server_url, **params)
    assert remote(COMPLETIONS, prompts=PROMPTS) == pytest.approx(local, abs=1e-5)
    counts = remote._fn.drain_metrics()  # one request per batch_size pairs, and the length watch's sums
    assert counts["batches"] == (4 if params.get("batch_size") == 1 else 1) and counts["corr_n"] == 4


def test_a_refused_connection_is_retried_then_one_line(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps = []
    monkeypatch.setattr("rewards.models.remote.time.sleep", sleeps.append)
    rm = get_reward("reward_model", url=f"http://127.0.0.1:{port}/", retries=2, timeout_s=2)
    with pytest.raises(ValueError, match=rf"^reward server http://127.0.0.1:{port}/: no answer after 3 tries; "
                                         r"last: .*refused"):
        rm(["hi"], prompts=["Greet Ann."])
    assert sleeps == [0.5, 1.0]  # backoff between the three tries


def test_a_silent_server_hits_the_deadline_and_stops_the_scorer():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        spec = {"reward_model": {"url": url, "timeout_s": 0.3, "retries": 0}}
        with RewardScorer(spec, num_workers=0) as scorer:
            with pytest.raises(RewardError) as e:
                scorer.score(["hi", "bye"], {"prompts": ["Greet Ann.", "Say goodbye to Bo."]})
    text = str(e.value)
    assert "reward 'reward_model' raised on all 2 completions" in text and "silent for 0.3 s (timeout_s)" in text
    assert "\n" not in text


def test_a_bad_answer_or_request_is_one_line(server_url):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from rewards.models.remote import post_scores
    with pytest.raises(ValueError, match="HTTP 400: .*bad request: expected lists 'prompts' and 'responses'"):
        post_scores(server_url, {"prompts": ["a"], "responses": ["x", "y"]}, 5.0, 3)  # 4xx: not retried

    class OneScore(BaseHTTPRequestHandler):  # answers one score whatever it is asked
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"scores": [1.0]}')

        def log_message(self, *args):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), OneScore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ValueError, match=r'expected \{"scores": \[2 numbers\]\}, got \{\'scores\': \[1.0\]\}'):
            post_scores(f"http://127.0.0.1:{server.server_address[1]}/", {"prompts": ["a", "b"],
                                                                         "responses": ["x", "y"]}, 5.0, 0)
    finally:
        server.shutdown()
        server.server_close()
