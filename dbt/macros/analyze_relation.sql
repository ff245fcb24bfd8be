{#-
  Postgres: fresh statistics of a table a build just wrote, before the next model or test plans a query on it
  (autovacuum analyzes it only later; a plan made without statistics takes a month's rows to be anywhere).
  Nothing on the other warehouses, which keep their statistics as they write. A post-hook of the core and marts
  tables (dbt_project.yml).
-#}
{% macro analyze_relation(relation) -%}
    {%- if target.type == 'postgres' -%}
        analyze {{ relation }}
    {%- endif -%}
{%- endmacro %}
