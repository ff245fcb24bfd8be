{#-
  The `by_month` incremental strategy of the facts and marts: delete the changed months (the model's
  `incremental_predicates`), then insert the model's rows, in one transaction. dbt's own delete+insert deletes
  only the keys present in the new rows, so a month that now yields no row at all would keep its old rows.
-#}
{% macro get_incremental_by_month_sql(arg_dict) -%}
    {#- not `target`, which would hide dbt's target (its `type` the warehouse's) behind the relation's -#}
    {%- set relation = arg_dict["target_relation"] -%}
    {%- set columns = get_quoted_csv(arg_dict["dest_columns"] | map(attribute="name")) -%}
    {%- set predicates = arg_dict["incremental_predicates"] or [] -%}
    {%- if not predicates -%}
        {{ exceptions.raise_compiler_error("the by_month strategy needs incremental_predicates naming the months") }}
    {%- endif -%}
    {%- set dml -%}
        delete from {{ relation }} where {{ predicates | join(' and ') }};
        insert into {{ relation }} ({{ columns }})
        select {{ columns }} from {{ arg_dict["temp_relation"] }}
    {%- endset -%}
    {%- if target.type == 'snowflake' -%}
        {{ return(snowflake_dml_explicit_transaction(dml)) }}
    {%- elif target.type == 'bigquery' -%}
        {#- one script, one transaction: a failed insert rolls the delete back (BigQuery has no session here) -#}
        {{ return('begin transaction;\n' ~ dml ~ ';\ncommit transaction;') }}
    {%- endif -%}
    {{ return(dml) }}
{%- endmacro %}

{#-
  dbt-bigquery's incremental materialization takes only its own strategies (merge, insert_overwrite, microbatch),
  not the `get_incremental_<name>_sql` macros of other adapters: these two overrides of its macros (a project's
  macro wins over an adapter's of the same name) let `by_month` through and build its SQL as on the other
  targets, every other strategy going to dbt-bigquery's own macros.
-#}
{% macro dbt_bigquery_validate_get_incremental_strategy(config) -%}
    {%- if config.get('incremental_strategy') == 'by_month' -%}
        {{ return('by_month') }}
    {%- endif -%}
    {{ return(dbt.dbt_bigquery_validate_get_incremental_strategy(config)) }}
{%- endmacro %}

{% macro bq_generate_incremental_build_sql(
    strategy, tmp_relation, target_relation, sql, unique_key, partition_by, partitions, dest_columns,
    tmp_relation_exists, copy_partitions, incremental_predicates
) -%}
    {%- if strategy == 'by_month' -%}
        {#- the model's rows: the temporary table dbt made (to check the schema), else the model's query -#}
        {%- set source = tmp_relation if tmp_relation_exists else '(' ~ sql ~ ')' -%}
        {{ return(get_incremental_by_month_sql({
            'target_relation': target_relation, 'temp_relation': source, 'dest_columns': dest_columns,
            'incremental_predicates': incremental_predicates})) }}
    {%- endif -%}
    {{ return(dbt.bq_generate_incremental_build_sql(
        strategy, tmp_relation, target_relation, sql, unique_key, partition_by, partitions, dest_columns,
        tmp_relation_exists, copy_partitions, incremental_predicates)) }}
{%- endmacro %}
