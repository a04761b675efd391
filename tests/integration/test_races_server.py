"""Races through ThreadedMotoServer on 127.0.0.1 (in-process moto is not thread-safe).

8 concurrent plan invocations for the same targets and step lose no decision and store none twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from forescale.adapters.events import EventPublisher
from forescale.adapters.state import DynamoStateStore, table_definition
from forescale.local.moto_extension import install
from forescale.runtime.models import DemandSampleDetail, Mode, TargetConfig
from forescale.runtime.plan import PlanService

START = 1_795_392_000
WORKERS = 8


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    install()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    yield f"http://{host}:{port}"
    srv.stop()


def client(url: str, service: str) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=url,  # type: ignore[call-overload]
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )


@pytest.fixture
def store(server: str) -> DynamoStateStore:
    db = client(server, "dynamodb")
    name = f"race-{threading.get_ident()}-{id(db)}"
    db.create_table(**table_definition(name))
    client(server, "events").create_event_bus(Name=name)
    st = DynamoStateStore(db, name)
    st.table_name = name  # type: ignore[attr-defined]
    return st


def run_concurrently(fns: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(fns))

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fns[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_given_8_concurrent_plans_for_the_same_step_then_one_decision_per_target_and_none_lost(
    server: str, store: DynamoStateStore
) -> None:
    names = [f"fn-{i}" for i in range(6)]
    for n in names:
        store.put_target(
            TargetConfig(
                name=n,
                kind="lambda-provisioned",
                function_name=n,
                qualifier="live",  # type: ignore[arg-type]
                mode=Mode.ACTIVE,
            )
        )
        store.put_samples(
            [DemandSampleDetail(target=n, timestamp=START + 60 * i, requests=600 * (1 + i % 3)) for i in range(30)],
            ttl_s=86_400,
        )
    bus = store.table_name  # type: ignore[attr-defined]
    for step in (30, 31):
        # Each worker has its own clients, as separate Lambda invocations would.
        services = [
            PlanService(
                DynamoStateStore(client(server, "dynamodb"), store.table_name),  # type: ignore[attr-defined]
                EventPublisher(client(server, "events"), bus),
            )
            for _ in range(WORKERS)
        ]
        now = START + 60 * step
        summaries = run_concurrently([lambda s=s, now=now: s.plan(names, now) for s in services])
        decided = sum(s.decided for s in summaries)
        assert decided >= len(names)  # every target decided by someone
        for n in names:
            decisions = store.list_decisions(n, limit=10)
            assert len({d.decided_at for d in decisions}) == len(decisions)  # never two records for one step
            _, version, observed = store.get_planner(n)
            assert observed == now
            assert version == step - 29  # exactly one planner write per step won; the others conflicted
    first = {n: store.list_decisions(n, newest_first=False)[0] for n in names}
    assert all(d.decided_at == START + 1800 for d in first.values())  # the first step's decision was kept
