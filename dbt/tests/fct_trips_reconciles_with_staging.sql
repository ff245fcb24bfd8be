-- fct_trips holds exactly the staged green and yellow rows minus the documented exclusions
-- (pickup month ≠ source_month; pickup or dropoff location not in dim_zones). Returns a row when it does not.
with staged as (
    select pickup_datetime, source_month, pickup_location_id, dropoff_location_id from {{ ref('stg_green_tripdata') }}
    union all
    select pickup_datetime, source_month, pickup_location_id, dropoff_location_id from {{ ref('stg_yellow_tripdata') }}
),

expected as (
    select count(*) as n
    from staged
    where {{ dbt.date_trunc('month', 'pickup_datetime') }} = {{ month_start('source_month') }}
      and pickup_location_id in (select location_id from {{ ref('dim_zones') }})
      and dropoff_location_id in (select location_id from {{ ref('dim_zones') }})
),

actual as (
    select count(*) as n from {{ ref('fct_trips') }}
)

select expected.n as expected_rows, actual.n as actual_rows
from expected cross join actual
where expected.n <> actual.n
