{#-
  The months an incremental build rebuilds. The pipeline passes `taxi_changed_months`, a map of raw table → the
  `YYYY-MM` months loaded or replaced there since the last successful dbt build (`--vars`); models and tests
  then read and check only those months. Without the var (a plain `dbt build`, `--full-refresh`) every month is
  read and checked, which is always correct, only slower.
-#}

{#- The changed months of `tables` (raw table names), sorted; none when the var is not set (every month). -#}
{% macro changed_months(tables) -%}
    {%- set changed = var('taxi_changed_months', none) -%}
    {%- if changed is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set months = [] -%}
    {%- for table in tables -%}
        {%- for month in changed.get(table, []) -%}
            {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}', month | string) -%}
                {{ exceptions.raise_compiler_error("taxi_changed_months: bad month " ~ month ~ " for " ~ table ~ " (expected YYYY-MM)") }}
            {%- endif -%}
            {%- if month not in months -%}{%- do months.append(month | string) -%}{%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(months | sort) }}
{%- endmacro %}

{#- A predicate keeping the changed months of `tables` in `column` (a `YYYY-MM` text column): `1 = 1` without the var. -#}
{% macro changed_months_filter(column, tables) -%}
    {%- set months = changed_months(tables) -%}
    {%- if months is none -%}
        1 = 1
    {%- elif months | length == 0 -%}
        1 = 0
    {%- else -%}
        {{ column }} in ('{{ months | join("', '") }}')
    {%- endif -%}
{%- endmacro %}

{#- The same for a `date` column holding the first day of the month (the marts' months). -#}
{% macro changed_month_starts_filter(column, tables) -%}
    {%- set months = changed_months(tables) -%}
    {%- if months is none -%}
        1 = 1
    {%- elif months | length == 0 -%}
        1 = 0
    {%- else -%}
        {{ column }} in ({% for month in months %}cast('{{ month }}-01' as date){{ ", " if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}

{#- Every raw trip table: what the comparison mart and the tests of changed months look at. -#}
{% macro trip_tables() -%}
    {{ return(['green_tripdata', 'yellow_tripdata', 'fhv_tripdata', 'fhvhv_tripdata']) }}
{%- endmacro %}

{#-
  Tests scale with the months just built: the project gives every test `where: "__changed_months__"`
  (dbt_project.yml), which keeps the rows of changed months (`source_month`) of a relation that has that column,
  and every row of the others (the zones, the marts: small) or when no months are passed. dbt renders a test's
  `where` without project macros, hence the placeholder (dbt's documented way: override get_where_subquery).
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where and '__changed_months__' in where -%}
        {%- set months = changed_months(trip_tables()) -%}
        {%- set names = [] -%}
        {%- if execute and months is not none -%}
            {%- for column in adapter.get_columns_in_relation(relation) -%}
                {%- do names.append(column.name | lower) -%}
            {%- endfor -%}
        {%- endif -%}
        {%- set month_filter = changed_months_filter('source_month', trip_tables()) if 'source_month' in names else '1 = 1' -%}
        {%- set where = where | replace('__changed_months__', month_filter) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
