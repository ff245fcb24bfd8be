with source as (
    select * from {{ source_or_empty('taxi_raw', 'fhv_tripdata', [
        'dispatching_base_num', 'pickup_datetime', 'dropoff_datetime', 'pu_location_id', 'do_location_id',
        'sr_flag', 'affiliated_base_number', 'source_month', 'source_file']) }}
),

hashed as (
    select
        *,
        {{ row_hash([
            'source_file', 'dispatching_base_num', 'pickup_datetime', 'dropoff_datetime', 'pu_location_id',
            'do_location_id', 'sr_flag', 'affiliated_base_number']) }} as row_hash
    from source
)

select
    {{ row_key('row_hash') }} as trip_id,
    dispatching_base_num,
    cast(pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast(dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,
    cast(pu_location_id as {{ dbt.type_int() }}) as pickup_location_id,
    cast(do_location_id as {{ dbt.type_int() }}) as dropoff_location_id,
    cast(sr_flag as {{ dbt.type_int() }}) as sr_flag,
    affiliated_base_number,
    source_month,
    source_file
from hashed
