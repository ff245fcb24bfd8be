-- The comparison mart's taxi and app trips of each month add up to the facts' (the changed months on a monthly
-- build), both ways: a month in one and not the other counts too. Returns a row per month and ride type where
-- they do not.
{% set months = changed_months_filter('source_month', trip_tables()) %}
with facts as (
    select {{ month_start('source_month') }} as trip_month, 'Taxi' as ride_type, count(*) as trips
    from {{ ref('fct_trips') }} where {{ months }} group by 1, 2
    union all
    select {{ month_start('source_month') }} as trip_month, 'App' as ride_type, count(*) as trips
    from {{ ref('fct_fhv_trips') }} where service_type = 'HVFHV' and {{ months }} group by 1, 2
),

mart as (
    select trip_month, ride_type, sum(trips) as trips
    from {{ ref('dm_monthly_zone_taxi_vs_app') }}
    where {{ changed_month_starts_filter('trip_month', trip_tables()) }}
    group by 1, 2
)

select
    coalesce(facts.trip_month, mart.trip_month) as trip_month,
    coalesce(facts.ride_type, mart.ride_type) as ride_type,
    facts.trips as fact_trips,
    mart.trips as mart_trips
from facts
full outer join mart on facts.trip_month = mart.trip_month and facts.ride_type = mart.ride_type
where facts.trips is null or mart.trips is null or facts.trips <> mart.trips
