{#-
  The trip key of a staged row: its file's month, its taxi type and its index in the file (`source_row`, which the
  loader records for every row), in one bigint: `YYYYMM`, the type's digit, then nine digits of row
  (2019-01 green row 41 → 201901 1 000000041). A month holds one file's rows (the loader replaces a month whole), so
  the key is unique by construction across every trip table, and a reload of the same file gives the same keys;
  nothing is hashed or sorted. Nine digits hold a billion rows a file (the largest, fhvhv, has ~25 million).
-#}
{% macro trip_key(taxi) -%}
    {%- set digit = {'green': 1, 'yellow': 2, 'fhv': 3, 'fhvhv': 4}[taxi] -%}
    (cast(replace(source_month, '-', '') as {{ dbt.type_bigint() }}) * 10 + {{ digit }}) * 1000000000
        + cast(source_row as {{ dbt.type_bigint() }})
{%- endmacro %}
