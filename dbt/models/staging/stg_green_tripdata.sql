with source as (
    select * from {{ source_or_empty('taxi_raw', 'green_tripdata', [
        'vendor_id', 'lpep_pickup_datetime', 'lpep_dropoff_datetime', 'store_and_fwd_flag', 'ratecode_id',
        'pu_location_id', 'do_location_id', 'passenger_count', 'trip_distance', 'fare_amount', 'extra', 'mta_tax',
        'tip_amount', 'tolls_amount', 'ehail_fee', 'improvement_surcharge', 'total_amount', 'payment_type',
        'trip_type', 'congestion_surcharge', 'source_month', 'source_file', 'source_row']) }}
)

select
    {{ trip_key('green') }} as trip_id,
    cast(vendor_id as {{ dbt.type_int() }}) as vendor_id,
    cast(ratecode_id as {{ dbt.type_int() }}) as ratecode_id,
    cast(pu_location_id as {{ dbt.type_int() }}) as pickup_location_id,
    cast(do_location_id as {{ dbt.type_int() }}) as dropoff_location_id,
    cast(lpep_pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast(lpep_dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,
    store_and_fwd_flag,
    cast(passenger_count as {{ dbt.type_int() }}) as passenger_count,
    cast(trip_distance as {{ type_amount() }}) as trip_distance,
    cast(trip_type as {{ dbt.type_int() }}) as trip_type,
    cast(fare_amount as {{ type_amount() }}) as fare_amount,
    cast(extra as {{ type_amount() }}) as extra,
    cast(mta_tax as {{ type_amount() }}) as mta_tax,
    cast(tip_amount as {{ type_amount() }}) as tip_amount,
    cast(tolls_amount as {{ type_amount() }}) as tolls_amount,
    cast(ehail_fee as {{ type_amount() }}) as ehail_fee,
    cast(improvement_surcharge as {{ type_amount() }}) as improvement_surcharge,
    cast(total_amount as {{ type_amount() }}) as total_amount,
    cast(congestion_surcharge as {{ type_amount() }}) as congestion_surcharge,
    cast(payment_type as {{ dbt.type_int() }}) as payment_type,
    {{ get_payment_type_description('payment_type') }} as payment_type_description,
    source_month,
    source_file,
    cast(source_row as {{ dbt.type_bigint() }}) as source_row
from source
