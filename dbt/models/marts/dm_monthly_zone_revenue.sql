{#- Incremental by month like fct_trips, whose months it sums (revenue_month is the trips' source_month). -#}
{% set raw_tables = ['green_tripdata', 'yellow_tripdata'] %}
{{ config(
    materialized='incremental',
    incremental_strategy='by_month',
    incremental_predicates=[changed_month_starts_filter('revenue_month', raw_tables)],
    on_schema_change='fail',
    partition_by=month_partitions('revenue_month', 'date'),
    cluster_by=clustered_by(['revenue_zone']),
) }}

select
    pickup_zone as revenue_zone,
    cast({{ dbt.date_trunc('month', 'pickup_datetime') }} as date) as revenue_month,
    service_type,
    {{ amount_total('fare_amount') }} as revenue_monthly_fare,
    {{ amount_total('extra') }} as revenue_monthly_extra,
    {{ amount_total('mta_tax') }} as revenue_monthly_mta_tax,
    {{ amount_total('tip_amount') }} as revenue_monthly_tip_amount,
    {{ amount_total('tolls_amount') }} as revenue_monthly_tolls_amount,
    {{ amount_total('ehail_fee') }} as revenue_monthly_ehail_fee,
    {{ amount_total('improvement_surcharge') }} as revenue_monthly_improvement_surcharge,
    {{ amount_total('total_amount') }} as revenue_monthly_total_amount,
    count(trip_id) as total_monthly_trips,
    avg(passenger_count) as avg_monthly_passenger_count,
    avg(trip_distance) as avg_monthly_trip_distance
from {{ ref('fct_trips') }}
{% if is_incremental() -%}
where {{ changed_months_filter('source_month', raw_tables) }}
{%- endif %}
group by 1, 2, 3
