"""Locust scenario for nanorec's POST /recommend with the reference's mix: 70 % of requests for
users 1..1000 (mostly cache hits once warm), 30 % for other users (cold path), k = 10.

    locust -f bench/locustfile_recommend.py --host http://127.0.0.1:8000 \
        --headless -u 32 -r 32 -t 30s

N_USERS (20000) sets the user id range; the wrk script bench/wrk_recommend.lua does the same.
"""
import os
import random

from locust import FastHttpUser, constant, task

N_USERS = int(os.environ.get("N_USERS", "20000"))
HOT_SHARE = float(os.environ.get("HOT_SHARE", "0.7"))


class Recommend(FastHttpUser):
    wait_time = constant(0)

    @task
    def recommend(self):
        if random.random() < HOT_SHARE:
            user, name = random.randint(1, 1000), "/recommend [hot users]"
        else:
            user, name = random.randint(1001, N_USERS), "/recommend [other users]"
        with self.client.post("/recommend", json={"user_id": user, "k": 10}, name=name,
                              catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
            elif len(r.json().get("movie_ids", [])) != 10:
                r.failure("not 10 movies")
