{#-
  A deterministic surrogate key for rows that have no natural key (TLC files repeat identical rows):
  the hash of every listed column (nulls marked), plus the row's position among identical rows. The same file
  always yields the same keys; identical rows get distinct ones, so nothing is dropped to make keys unique.
  Cross-database through dbt's hash / concat / cast macros.
-#}
{% macro row_hash(columns) -%}
    {%- set parts = [] -%}
    {%- for column in columns -%}
        {%- do parts.append("coalesce(cast(" ~ column ~ " as " ~ dbt.type_string() ~ "), '~')") -%}
        {%- if not loop.last %}{% do parts.append("'|'") %}{% endif -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}

{#-
  `month_column` (the file's month, which the hash already includes through source_file) is a partition key
  too, so a filter on the month reaches the raw table through the window: a build of one month reads that month.
-#}
{% macro row_key(hash_column, month_column='source_month') -%}
    {{ dbt.hash(dbt.concat([hash_column, "'#'", "cast(row_number() over (partition by " ~ month_column ~ ", " ~ hash_column ~ " order by " ~ hash_column ~ ") as " ~ dbt.type_string() ~ ")"])) }}
{%- endmacro %}
