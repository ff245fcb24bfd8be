{#-
  How a fact or mart is laid out on BigQuery (ignored, `none`, on the other targets, whose dbt adapters would
  otherwise take `partition_by` for their own settings): partitioned by month on its time or month column, so a
  month's query reads that month, and clustered on the columns months and zones are picked by (the `by_month`
  delete of the changed months filters on source_month).
-#}
{% macro month_partitions(column, data_type='timestamp') -%}
    {{ return({'field': column, 'data_type': data_type, 'granularity': 'month'} if target.type == 'bigquery' else none) }}
{%- endmacro %}

{% macro clustered_by(columns) -%}
    {{ return(columns if target.type == 'bigquery' else none) }}
{%- endmacro %}
