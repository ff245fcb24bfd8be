{#-
  The `by_month` incremental strategy of the facts and marts: delete the changed months (the model's
  `incremental_predicates`), then insert the model's rows, in one transaction. dbt's own delete+insert deletes
  only the keys present in the new rows, so a month that now yields no row at all would keep its old rows.
-#}
{% macro get_incremental_by_month_sql(arg_dict) -%}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set columns = get_quoted_csv(arg_dict["dest_columns"] | map(attribute="name")) -%}
    {%- set predicates = arg_dict["incremental_predicates"] or [] -%}
    {%- if not predicates -%}
        {{ exceptions.raise_compiler_error("the by_month strategy needs incremental_predicates naming the months") }}
    {%- endif -%}
    {%- set dml -%}
        delete from {{ target }} where {{ predicates | join(' and ') }};
        insert into {{ target }} ({{ columns }})
        select {{ columns }} from {{ arg_dict["temp_relation"] }}
    {%- endset -%}
    {%- if target.type == 'snowflake' -%}
        {{ return(snowflake_dml_explicit_transaction(dml)) }}
    {%- endif -%}
    {{ return(dml) }}
{%- endmacro %}
