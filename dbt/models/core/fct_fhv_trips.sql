{#-
  For-hire trips in one table: app-based rides (high volume FHV: Uber, Lyft, Via, Juno; service_type 'HVFHV')
  and traditional for-hire vehicles (service_type 'FHV', no fares in their files), with pickup and dropoff zones.
  The same exclusions as fct_trips (checked by tests/fct_fhv_trips_reconciles_with_staging.sql):
    1. rows whose pickup month differs from the month of their file (source_month);
    2. rows whose pickup or dropoff location is not a known zone (null or not in dim_zones): many older FHV rows.
  Incremental by month, like fct_trips.
-#}
{% set raw_tables = ['fhv_tripdata', 'fhvhv_tripdata'] %}
{{ config(
    materialized='incremental',
    incremental_strategy='by_month',
    incremental_predicates=[changed_months_filter('source_month', raw_tables)],
    on_schema_change='fail',
    indexes=[{'columns': ['source_month'], 'type': 'brin'}] if target.type == 'postgres' else [],
    partition_by=month_partitions('pickup_datetime'),
    cluster_by=clustered_by(['source_month', 'pickup_location_id']),
) }}

{% set months = changed_months_filter('source_month', raw_tables) if is_incremental() else '1 = 1' %}
{% set fare = type_amount() %}

with trips as (
    select
        trip_id,
        'HVFHV' as service_type,
        company,
        dispatching_base_num,
        pickup_location_id,
        dropoff_location_id,
        pickup_datetime,
        dropoff_datetime,
        trip_miles,
        trip_time,
        base_passenger_fare,
        tolls,
        bcf,
        sales_tax,
        congestion_surcharge,
        airport_fee,
        tips,
        driver_pay,
        -- what the passenger paid: the fare and every charge passed on to them
        base_passenger_fare + coalesce(tolls, 0) + coalesce(bcf, 0) + coalesce(sales_tax, 0)
            + coalesce(congestion_surcharge, 0) + coalesce(airport_fee, 0) + coalesce(cbd_congestion_fee, 0)
            + coalesce(tips, 0) as passenger_total,
        shared_request_flag,
        source_month
    from {{ ref('stg_fhvhv_tripdata') }}
    where {{ months }}
    union all
    select
        trip_id,
        'FHV' as service_type,
        cast(null as {{ dbt.type_string() }}) as company,
        dispatching_base_num,
        pickup_location_id,
        dropoff_location_id,
        pickup_datetime,
        dropoff_datetime,
        cast(null as {{ fare }}) as trip_miles,
        cast(null as {{ dbt.type_int() }}) as trip_time,
        cast(null as {{ fare }}) as base_passenger_fare,
        cast(null as {{ fare }}) as tolls,
        cast(null as {{ fare }}) as bcf,
        cast(null as {{ fare }}) as sales_tax,
        cast(null as {{ fare }}) as congestion_surcharge,
        cast(null as {{ fare }}) as airport_fee,
        cast(null as {{ fare }}) as tips,
        cast(null as {{ fare }}) as driver_pay,
        cast(null as {{ fare }}) as passenger_total,
        case when sr_flag = 1 then 'Y' else 'N' end as shared_request_flag,
        source_month
    from {{ ref('stg_fhv_tripdata') }}
    where {{ months }}
),

zones as (
    select * from {{ ref('dim_zones') }}
)

{{ located_trips(
    ['trip_id', 'service_type', 'company', 'dispatching_base_num'],
    ['pickup_datetime', 'dropoff_datetime', 'trip_miles', 'trip_time', 'base_passenger_fare', 'tolls', 'bcf',
     'sales_tax', 'congestion_surcharge', 'airport_fee', 'tips', 'driver_pay', 'passenger_total',
     'shared_request_flag', 'source_month'],
) }}
