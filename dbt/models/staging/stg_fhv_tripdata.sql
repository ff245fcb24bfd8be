with source as (
    select * from {{ source_or_empty('taxi_raw', 'fhv_tripdata', [
        'dispatching_base_num', 'pickup_datetime', 'dropoff_datetime', 'pu_location_id', 'do_location_id',
        'sr_flag', 'affiliated_base_number', 'source_month', 'source_file', 'source_row']) }}
)

select
    {{ trip_key('fhv') }} as trip_id,
    dispatching_base_num,
    cast(pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast(dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,
    cast(pu_location_id as {{ dbt.type_int() }}) as pickup_location_id,
    cast(do_location_id as {{ dbt.type_int() }}) as dropoff_location_id,
    cast(sr_flag as {{ dbt.type_int() }}) as sr_flag,
    affiliated_base_number,
    source_month,
    source_file,
    cast(source_row as {{ dbt.type_bigint() }}) as source_row
from source
