{#- The first day of a `YYYY-MM` month string (the raw tables' source_month) as a date. -#}
{% macro month_start(month_column) -%}
    cast({{ dbt.concat([month_column, "'-01'"]) }} as date)
{%- endmacro %}
