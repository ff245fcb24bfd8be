{#-
  The end of a fact model: the rows of its `trips` CTE with their pickup and dropoff zones from its `zones` CTE
  (dim_zones), minus the documented exclusions: (1) trips picked up outside the month of their file
  (source_month); (2) trips whose pickup or dropoff location is not a zone. Columns: `leading`, the zones, then
  `trailing`. No sort: the raw tables are stored month after month (a load is a month), and the rows come out
  of them in that order, so a full build stores each month's rows together, as a monthly build appends one month;
  the month's rows are found (min/max pruning, Postgres' BRIN index) and deleted without a full scan. Sorting
  them was half of a full build's time on DuckDB.
-#}
{% macro located_trips(leading, trailing) -%}
select
    {%- for column in leading %}
    trips.{{ column }},
    {%- endfor %}
    trips.pickup_location_id,
    pickup_zone.borough as pickup_borough,
    pickup_zone.zone as pickup_zone,
    trips.dropoff_location_id,
    dropoff_zone.borough as dropoff_borough,
    dropoff_zone.zone as dropoff_zone,
    {%- for column in trailing %}
    trips.{{ column }}{{ "," if not loop.last }}
    {%- endfor %}
from trips
inner join zones as pickup_zone on trips.pickup_location_id = pickup_zone.location_id
inner join zones as dropoff_zone on trips.dropoff_location_id = dropoff_zone.location_id
where {{ pickup_in_month('trips.pickup_datetime', 'trips.source_month') }}

{%- endmacro %}

{#-
  Whether a pickup time falls in a `YYYY-MM` month. Both sides dates: BigQuery compares no TIMESTAMP with a DATE
  ("No matching signature for operator ="), where the other warehouses would cast the date.
-#}
{% macro pickup_in_month(pickup_column, month_column) -%}
    cast({{ dbt.date_trunc('month', pickup_column) }} as date) = {{ month_start(month_column) }}
{%- endmacro %}
