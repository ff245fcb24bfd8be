{#-
  The raw table if the pipeline has loaded it, else an empty relation with the same columns, so the project
  builds whichever taxi types were loaded (e.g. green only) instead of failing on a missing table. The empty
  relation selects from a one-row subquery: BigQuery takes no WHERE in a query without FROM.
-#}
{% macro source_or_empty(source_name, table_name, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if execute and adapter.get_relation(relation.database, relation.schema, relation.identifier) is none -%}
        (select {% for column in columns %}cast(null as {{ dbt.type_string() }}) as {{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
            from (select 1 as one) as one_row where 1 = 0) as {{ table_name }}_missing
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}
