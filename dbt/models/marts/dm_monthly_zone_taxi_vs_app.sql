{#-
  Taxis beside app-based rides: per pickup zone and month, yellow and green taxi trips ('Taxi', fct_trips) and
  high volume for-hire trips ('App': Uber, Lyft, Via, Juno; fct_fhv_trips) with their fares and trip lengths.
  `total_fare` is the metered fare (taxis) or the base passenger fare (apps), before tolls, taxes, surcharges and
  tips; `total_paid` adds those (taxis: total_amount; apps: passenger_total). Incremental by month.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='by_month',
    incremental_predicates=[changed_month_starts_filter('trip_month', trip_tables())],
    on_schema_change='fail',
    partition_by=month_partitions('trip_month', 'date'),
    cluster_by=clustered_by(['pickup_location_id']),
) }}

{% set months = changed_months_filter('source_month', trip_tables()) if is_incremental() else '1 = 1' %}

with rides as (
    select
        pickup_location_id,
        pickup_borough,
        pickup_zone,
        source_month,
        'Taxi' as ride_type,
        fare_amount as fare,
        total_amount as paid,
        trip_distance as miles,
        {{ dbt.datediff('pickup_datetime', 'dropoff_datetime', 'second') }} / 60.0 as minutes
    from {{ ref('fct_trips') }}
    where {{ months }}
    union all
    select
        pickup_location_id,
        pickup_borough,
        pickup_zone,
        source_month,
        'App' as ride_type,
        base_passenger_fare as fare,
        passenger_total as paid,
        trip_miles as miles,
        trip_time / 60.0 as minutes
    from {{ ref('fct_fhv_trips') }}
    where service_type = 'HVFHV' and {{ months }}
)

select
    pickup_location_id,
    pickup_borough,
    pickup_zone,
    {{ month_start('source_month') }} as trip_month,
    ride_type,
    count(*) as trips,
    {{ amount_total('fare') }} as total_fare,
    {{ amount_total('paid') }} as total_paid,
    avg(fare) as avg_fare,
    avg(miles) as avg_trip_miles,
    avg(minutes) as avg_trip_minutes
from rides
group by 1, 2, 3, 4, 5
