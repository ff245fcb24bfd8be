{#-
  The type of the trips' amounts (fares, fees, tips, miles) in staging and the facts: double precision, as the raw
  tables hold them (the TLC's parquet files are float64, and the loader keeps their values). A cast of every
  amount to `numeric(28,6)` (dbt.type_numeric) was most of a Postgres monthly build: 10 of the 17 s of a 4M-row
  yellow month's staging, for no digit the file did not have. The marts round their sums to cents as numeric
  (`amount_total`), where adding up millions of doubles would otherwise show in the last places.
-#}
{% macro type_amount() -%}
    {{ return('float64' if target.type == 'bigquery' else 'double precision') }}
{%- endmacro %}

{#- The sum of an amount column, to cents, as numeric: what a mart reports. -#}
{% macro amount_total(column) -%}
    round(cast(sum({{ column }}) as {{ dbt.type_numeric() }}), 2)
{%- endmacro %}
