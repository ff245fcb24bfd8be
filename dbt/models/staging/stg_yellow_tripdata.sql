with source as (
    select * from {{ source_or_empty('taxi_raw', 'yellow_tripdata', [
        'vendor_id', 'tpep_pickup_datetime', 'tpep_dropoff_datetime', 'passenger_count', 'trip_distance',
        'ratecode_id', 'store_and_fwd_flag', 'pu_location_id', 'do_location_id', 'payment_type', 'fare_amount',
        'extra', 'mta_tax', 'tip_amount', 'tolls_amount', 'improvement_surcharge', 'total_amount',
        'congestion_surcharge', 'airport_fee', 'source_month', 'source_file', 'source_row']) }}
)

select
    {{ trip_key('yellow') }} as trip_id,
    cast(vendor_id as {{ dbt.type_int() }}) as vendor_id,
    cast(ratecode_id as {{ dbt.type_int() }}) as ratecode_id,
    cast(pu_location_id as {{ dbt.type_int() }}) as pickup_location_id,
    cast(do_location_id as {{ dbt.type_int() }}) as dropoff_location_id,
    cast(tpep_pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast(tpep_dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,
    store_and_fwd_flag,
    cast(passenger_count as {{ dbt.type_int() }}) as passenger_count,
    cast(trip_distance as {{ type_amount() }}) as trip_distance,
    -- yellow cabs only take street hails (trip_type 1 in the green data dictionary)
    cast(1 as {{ dbt.type_int() }}) as trip_type,
    cast(fare_amount as {{ type_amount() }}) as fare_amount,
    cast(extra as {{ type_amount() }}) as extra,
    cast(mta_tax as {{ type_amount() }}) as mta_tax,
    cast(tip_amount as {{ type_amount() }}) as tip_amount,
    cast(tolls_amount as {{ type_amount() }}) as tolls_amount,
    cast(0 as {{ type_amount() }}) as ehail_fee,
    cast(improvement_surcharge as {{ type_amount() }}) as improvement_surcharge,
    cast(total_amount as {{ type_amount() }}) as total_amount,
    cast(congestion_surcharge as {{ type_amount() }}) as congestion_surcharge,
    cast(payment_type as {{ dbt.type_int() }}) as payment_type,
    {{ get_payment_type_description('payment_type') }} as payment_type_description,
    source_month,
    source_file,
    cast(source_row as {{ dbt.type_bigint() }}) as source_row
from source
