{#-
  Postgres: fresh statistics of what a build reads and writes, before a statement is planned on it (autovacuum
  analyzes a table only later; a plan made without statistics takes a month's rows to be anywhere, or few).
  Nothing on the other warehouses, which keep their statistics as they write.
-#}

{#- A post-hook of the core and mart tables (dbt_project.yml): the table just written. -#}
{% macro analyze_relation(relation) -%}
    {%- if target.type == 'postgres' -%}
        analyze {{ relation }}
    {%- endif -%}
{%- endmacro %}

{#-
  An on-run-start hook (dbt_project.yml): the raw tables the build reads, as the load left them. On a monthly
  build those with changed months (`taxi_changed_months`), on a full one all, and the zone lookup. Here rather than
  after each month's load, which would read a sample of the table once per month of a backfill for a build that
  comes once, after the last.
-#}
{% macro analyze_raw_tables() -%}
    {%- if target.type == 'postgres' and execute -%}
        {%- set changed = var('taxi_changed_months', none) -%}
        {%- set statements = [] -%}
        {%- for table in trip_tables() + ['taxi_zone_lookup'] -%}
            {%- if changed is none or changed.get(table) or table == 'taxi_zone_lookup' -%}
                {%- set relation = source('taxi_raw', table) -%}
                {%- if adapter.get_relation(relation.database, relation.schema, relation.identifier) is not none -%}
                    {%- do statements.append('analyze ' ~ relation) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
        {{ statements | join(';\n') }}
    {%- endif -%}
{%- endmacro %}
