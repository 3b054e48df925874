"""Locust scenarios for trendstory (the reference's load tool), used by scripts/bench_story.sh.

Each simulated user asks for one story after another (no think time): POST /v1/stories with
a random theme, `limit` 5 topics and STORY_TOKENS (128) generated tokens, not streamed. A
story's latency is the whole request. Topics come from the service's cache (the bench script
warms it), so the request path never waits on a trend source.

Shapes (env SHAPE):
  fixed (default)  -u/-r/-t from the command line (the 1/5/10/20-user table, steady, endurance)
  spike            0 -> 20 users over 30 s, hold SPIKE_HOLD s, then SPIKE_BASE users (5) for
                   SPIKE_POST s; recovery = from the drop until requests are back to the
                   steady 5-user latency
Every finished request is also appended to REQLOG (if set) as "t_end_s latency_ms status
ttft_ms completion_tokens trend_ms" so the bench script can compute recovery time after the
spike and the time spent getting topics on the request path.
"""
import json
import os
import random
import time

from locust import HttpUser, LoadTestShape, events, task

THEMES = ["comedy", "tragedy", "sarcasm", "mystery", "romance", "sci-fi"]
TOKENS = int(os.environ.get("STORY_TOKENS", "128"))
SOURCE = os.environ.get("STORY_SOURCE", "hackernews")
REQLOG = os.environ.get("REQLOG")
_log = open(REQLOG, "a", buffering=1) if REQLOG else None


class StoryUser(HttpUser):
    wait_time = staticmethod(lambda: 0)

    @task
    def story(self):
        body = {"source": SOURCE, "theme": random.choice(THEMES), "limit": 5,
                "max_tokens": TOKENS, "temperature": 0.8, "stream": False}
        t0 = time.time()
        with self.client.post("/v1/stories", json=body, name="/v1/stories",
                              catch_response=True, timeout=600) as r:
            lat = (time.time() - t0) * 1000
            ttft, ntok, trend = -1, -1, -1
            if r.status_code == 200:
                try:
                    t = r.json()["timings"]
                    ttft, ntok, trend = t["ttft_ms"], t["completion_tokens"], t["trend_ms"]
                    r.success()
                except (ValueError, KeyError) as e:
                    r.failure(f"bad body: {e}")
            else:
                r.failure(f"HTTP {r.status_code}")
            if _log:
                _log.write(f"{time.time():.3f} {lat:.1f} {r.status_code} {ttft:.1f} {ntok} "
                           f"{trend:.3f}\n")


if os.environ.get("SHAPE") == "spike":
    class Spike(LoadTestShape):
        """0 -> 20 users in 30 s, hold SPIKE_HOLD s, then SPIKE_BASE users for SPIKE_POST s."""
        base = int(os.environ.get("SPIKE_BASE", "5"))
        hold = int(os.environ.get("SPIKE_HOLD", "60"))
        post = int(os.environ.get("SPIKE_POST", "120"))
        peak = 20
        ramp = 30

        def tick(self):
            t = self.get_run_time()
            if t < self.ramp:  # one more user every 1.5 s
                return (max(1, int(self.peak * t / self.ramp) + 1), 100)
            if t < self.ramp + self.hold:
                return (self.peak, 100)
            if t < self.ramp + self.hold + self.post:
                return (self.base, 100)
            return None


@events.quitting.add_listener
def _close(environment, **kw):
    if _log:
        _log.flush()
