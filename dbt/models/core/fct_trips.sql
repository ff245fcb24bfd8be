{#-
  Green and yellow trips in one table, with pickup and dropoff zones.
  Exclusions (documented in _core.yml, checked by tests/fct_trips_reconciles_with_staging.sql):
    1. rows whose pickup month differs from the month of the file they came in (source_month): the TLC files
       carry a few trips from other months, usually clock errors; keeping them would double-count months;
    2. rows whose pickup or dropoff location is not a known zone (null or not in dim_zones).
  Incremental by month: a build with `taxi_changed_months` (the pipeline passes the months it loaded or replaced)
  deletes and re-inserts only those months; the first build and `--full-refresh` build every month.
-#}
{% set raw_tables = ['green_tripdata', 'yellow_tripdata'] %}
{{ config(
    materialized='incremental',
    incremental_strategy='by_month',
    incremental_predicates=[changed_months_filter('source_month', raw_tables)],
    on_schema_change='fail',
    indexes=[{'columns': ['source_month'], 'type': 'brin'}] if target.type == 'postgres' else [],
    partition_by=month_partitions('pickup_datetime'),
    cluster_by=clustered_by(['source_month', 'pickup_location_id']),
) }}

{% set trip_columns = [
    'trip_id', 'vendor_id', 'ratecode_id', 'pickup_location_id', 'dropoff_location_id', 'pickup_datetime',
    'dropoff_datetime', 'store_and_fwd_flag', 'passenger_count', 'trip_distance', 'trip_type', 'fare_amount',
    'extra', 'mta_tax', 'tip_amount', 'tolls_amount', 'ehail_fee', 'improvement_surcharge', 'total_amount',
    'congestion_surcharge', 'payment_type', 'payment_type_description', 'source_month'] %}

{% set months = changed_months_filter('source_month', raw_tables) if is_incremental() else '1 = 1' %}

with trips as (
    select {{ trip_columns | join(', ') }}, 'Green' as service_type from {{ ref('stg_green_tripdata') }}
    where {{ months }}
    union all
    select {{ trip_columns | join(', ') }}, 'Yellow' as service_type from {{ ref('stg_yellow_tripdata') }}
    where {{ months }}
),

zones as (
    select * from {{ ref('dim_zones') }}
)

{{ located_trips(
    ['trip_id', 'service_type', 'vendor_id', 'ratecode_id'],
    ['pickup_datetime', 'dropoff_datetime', 'store_and_fwd_flag', 'passenger_count', 'trip_distance', 'trip_type',
     'fare_amount', 'extra', 'mta_tax', 'tip_amount', 'tolls_amount', 'ehail_fee', 'improvement_surcharge',
     'total_amount', 'congestion_surcharge', 'payment_type', 'payment_type_description', 'source_month'],
) }}
