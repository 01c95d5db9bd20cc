"""The metrics store on DuckLake: the catalog in the test PostgreSQL schema, the data in a local
directory and in S3 (moto's S3 server on 127.0.0.1: S3 itself cannot run here). Two stores are two
replicas writing at once; a third reads what both wrote; rollups run on the lake like on the file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrics.lake import LakeError, open_lake
from metrics.rates import COUNTER_COLUMNS
from metrics.store import Batch, MetricsStore
from tests.conftest import free_port

T0 = 1_800_000_000.0


def _schema(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[-1]


def _batch(agent: str, n: int, start: float) -> Batch:
    b = Batch()
    for i in range(n):
        b.add(agent, "edge", start + 15.0 * i, 15.0, [30.0] + [0.0] * (len(COUNTER_COLUMNS) - 1), 1e7, 1.0)
    return b


def _replicas(url: str, data_path: str, n: int, env: dict[str, str] | None = None) -> list[MetricsStore]:
    return [MetricsStore(data_path, con=open_lake(url, data_path, _schema(url), env=env)) for _ in range(n)]


def _exercise(stores: list[MetricsStore]) -> None:
    a, b, reader = stores
    threads = [
        threading.Thread(target=s.insert, args=(_batch(f"ag_{i}", 40, T0),)) for i, s in enumerate((a, b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert reader.counts()["raw"] == 80  # both replicas' rows, read by a third
    done = a.rollup(T0 + 40 * 15.0 + 3600, lag_s=0)  # the leader rolls up
    assert done[60] > 0
    with reader.cursor() as cur:
        rows = cur.execute(
            "SELECT agent, sum(dt), sum("
            + COUNTER_COLUMNS[0]
            + ") FROM roll_60 GROUP BY agent ORDER BY agent"
        ).fetchall()
    assert rows == [("ag_0", 600.0, 1200.0), ("ag_1", 600.0, 1200.0)]
    a.compact()


def test_two_replicas_write_one_lake_in_a_directory(tmp_path: Path, database_url: str) -> None:
    stores = _replicas(database_url, str(tmp_path / "lake"), 3)
    try:
        _exercise(stores)
        assert list((tmp_path / "lake").rglob("*.parquet"))  # the data is Parquet in the data path
    finally:
        for s in stores:
            s.close()


@pytest.fixture
def s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 and a bucket; the environment a replica would get."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket="metrics")
        yield env
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside moto and botocore, not ours
def test_two_replicas_write_one_lake_in_s3(database_url: str, s3: dict[str, str]) -> None:
    stores = _replicas(database_url, "s3://metrics/lake", 3, env=s3)
    try:
        _exercise(stores)
        import boto3

        listed: Any = boto3.client(
            "s3", endpoint_url=s3["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
            aws_secret_access_key="testing", region_name="us-east-1",
        ).list_objects_v2(Bucket="metrics", Prefix="lake/")  # fmt: skip
        assert any(o["Key"].endswith(".parquet") for o in listed.get("Contents", []))
    finally:
        for s in stores:
            s.close()


def test_s3_without_credentials_is_a_clear_error(database_url: str) -> None:
    with pytest.raises(LakeError, match="AWS_ACCESS_KEY_ID"):
        open_lake(database_url, "s3://metrics/lake", _schema(database_url), env={})
