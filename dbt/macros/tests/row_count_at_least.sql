{#- Generic test: the relation has at least `min_rows` rows. -#}
{% test row_count_at_least(model, min_rows=1) %}
    select count(*) as row_count
    from {{ model }}
    having count(*) < {{ min_rows }}
{% endtest %}
