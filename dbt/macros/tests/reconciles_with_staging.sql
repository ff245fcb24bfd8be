{#-
  The body of a fact's reconciliation test: per month (the changed months of the staged tables on a monthly
  build), the fact's rows equal the staged rows kept by the documented exclusions (pickup month = source_month,
  pickup and dropoff in dim_zones). Returns a row per month where they differ (a month with no row kept has
  none in the fact: 0 on both sides).
-#}
{% macro reconciles_with_staging(fact, staging_models) -%}
{%- set raw_tables = [] -%}
{%- for model in staging_models -%}{%- do raw_tables.append(model | replace('stg_', '')) -%}{%- endfor -%}
{%- set months = changed_months_filter('source_month', raw_tables) -%}
with staged as (
    {%- for model in staging_models %}
    select pickup_datetime, source_month, pickup_location_id, dropoff_location_id from {{ ref(model) }}
    where {{ months }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

{#- the rows kept counted among all the month's rows, not filtered first: Postgres estimates the month filter
    on a raw table at 0.5 % of its rows and would sort the month to count it (4M rows spilled to disk) -#}
expected as (
    select
        source_month,
        sum(case
            when {{ pickup_in_month('pickup_datetime', 'source_month') }}
                and pickup_location_id in (select location_id from {{ ref('dim_zones') }})
                and dropoff_location_id in (select location_id from {{ ref('dim_zones') }})
            then 1 else 0
        end) as n
    from staged
    group by source_month
),

actual as (
    select source_month, count(*) as n from {{ ref(fact) }} where {{ months }} group by source_month
)

select coalesce(expected.source_month, actual.source_month) as source_month, expected.n as expected_rows,
    actual.n as actual_rows
from expected
full outer join actual on expected.source_month = actual.source_month
where coalesce(expected.n, 0) <> coalesce(actual.n, 0)
{%- endmacro %}
