{#-
  Postgres: a BRIN index on a fact's month column, so an incremental build deletes a month and its tests read a
  month without scanning the table (months are stored together: the full build orders by month, each monthly
  build appends one). DuckDB and Snowflake prune by their own min/max metadata: nothing to do.
-#}
{% macro month_index(column) -%}
    {%- if target.type == 'postgres' -%}
        create index if not exists {{ this.identifier }}_{{ column }}_brin on {{ this }} using brin ({{ column }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
