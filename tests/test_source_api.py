"""The dlt source used directly in a user's own pipeline: incremental by resource state, no runner needed."""

from __future__ import annotations

import dlt

from taxi_pipeline import taxi_source
from tests.conftest import month_counts


def test_source_in_own_pipeline_is_incremental(mirror, duck, workdir):
    mirror.trips("green", "2019-01", 8)
    mirror.trips("fhv", "2019-01", 6)
    pipe = dlt.pipeline(
        "my_taxi", destination=dlt.destinations.duckdb(str(workdir / "taxi_pipeline.duckdb")), dataset_name="taxi_raw"
    )
    pipe.run(taxi_source(taxi_types=["green", "fhv"], months=["2019-01"], base_url=mirror.url))
    assert month_counts(duck, "green_tripdata") == {"2019-01": 8}
    assert month_counts(duck, "fhv_tripdata") == {"2019-01": 6}
    gets = mirror.gets()
    pipe.run(taxi_source(taxi_types=["green", "fhv"], months=["2019-01"], base_url=mirror.url))
    assert mirror.gets() == gets  # unchanged months are skipped by the resources themselves
    mirror.trips("green", "2019-01", 5, seed=2)
    pipe.run(taxi_source(taxi_types=["green"], months=["2019-01"], base_url=mirror.url, zones=False))
    assert month_counts(duck, "green_tripdata") == {"2019-01": 5}
    state = pipe.state["sources"]["taxi"]["resources"]["green_tripdata"]["months"]["2019-01"]
    assert state["rows"] == 5 and state["file"] == "green_tripdata_2019-01.csv.gz" and state["etag"]
