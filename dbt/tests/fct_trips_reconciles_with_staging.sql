-- fct_trips holds exactly the staged green and yellow rows minus the documented exclusions
-- (pickup month ≠ source_month; pickup or dropoff location not in dim_zones), month by month (the changed months
-- on a monthly build). Returns a row per month where it does not.
{{ reconciles_with_staging('fct_trips', ['stg_green_tripdata', 'stg_yellow_tripdata']) }}
