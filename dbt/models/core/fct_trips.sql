{#-
  Green and yellow trips in one table, with pickup and dropoff zones.
  Exclusions (documented in _core.yml, checked by tests/fct_trips_reconciles_with_staging.sql):
    1. rows whose pickup month differs from the month of the file they came in (source_month): the TLC files
       carry a few trips from other months, usually clock errors; keeping them would double-count months;
    2. rows whose pickup or dropoff location is not a known zone (null or not in dim_zones).
-#}
{% set trip_columns = [
    'trip_id', 'vendor_id', 'ratecode_id', 'pickup_location_id', 'dropoff_location_id', 'pickup_datetime',
    'dropoff_datetime', 'store_and_fwd_flag', 'passenger_count', 'trip_distance', 'trip_type', 'fare_amount',
    'extra', 'mta_tax', 'tip_amount', 'tolls_amount', 'ehail_fee', 'improvement_surcharge', 'total_amount',
    'congestion_surcharge', 'payment_type', 'payment_type_description', 'source_month'] %}

with trips as (
    select {{ trip_columns | join(', ') }}, 'Green' as service_type from {{ ref('stg_green_tripdata') }}
    union all
    select {{ trip_columns | join(', ') }}, 'Yellow' as service_type from {{ ref('stg_yellow_tripdata') }}
),

zones as (
    select * from {{ ref('dim_zones') }}
)

select
    trips.trip_id,
    trips.service_type,
    trips.vendor_id,
    trips.ratecode_id,
    trips.pickup_location_id,
    pickup_zone.borough as pickup_borough,
    pickup_zone.zone as pickup_zone,
    trips.dropoff_location_id,
    dropoff_zone.borough as dropoff_borough,
    dropoff_zone.zone as dropoff_zone,
    trips.pickup_datetime,
    trips.dropoff_datetime,
    trips.store_and_fwd_flag,
    trips.passenger_count,
    trips.trip_distance,
    trips.trip_type,
    trips.fare_amount,
    trips.extra,
    trips.mta_tax,
    trips.tip_amount,
    trips.tolls_amount,
    trips.ehail_fee,
    trips.improvement_surcharge,
    trips.total_amount,
    trips.congestion_surcharge,
    trips.payment_type,
    trips.payment_type_description,
    trips.source_month
from trips
inner join zones as pickup_zone on trips.pickup_location_id = pickup_zone.location_id
inner join zones as dropoff_zone on trips.dropoff_location_id = dropoff_zone.location_id
where {{ dbt.date_trunc('month', 'trips.pickup_datetime') }} = {{ month_start('trips.source_month') }}
