with source as (
    select * from {{ source_or_empty('taxi_raw', 'fhvhv_tripdata', [
        'hvfhs_license_num', 'dispatching_base_num', 'originating_base_num', 'request_datetime', 'on_scene_datetime',
        'pickup_datetime', 'dropoff_datetime', 'pu_location_id', 'do_location_id', 'trip_miles', 'trip_time',
        'base_passenger_fare', 'tolls', 'bcf', 'sales_tax', 'congestion_surcharge', 'airport_fee', 'tips',
        'driver_pay', 'shared_request_flag', 'shared_match_flag', 'access_a_ride_flag', 'wav_request_flag',
        'wav_match_flag', 'cbd_congestion_fee', 'source_month', 'source_file', 'source_row']) }}
)

select
    {{ trip_key('fhvhv') }} as trip_id,
    hvfhs_license_num,
    {{ get_hvfhs_company('hvfhs_license_num') }} as company,
    dispatching_base_num,
    originating_base_num,
    cast(request_datetime as {{ dbt.type_timestamp() }}) as request_datetime,
    cast(on_scene_datetime as {{ dbt.type_timestamp() }}) as on_scene_datetime,
    cast(pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast(dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,
    cast(pu_location_id as {{ dbt.type_int() }}) as pickup_location_id,
    cast(do_location_id as {{ dbt.type_int() }}) as dropoff_location_id,
    cast(trip_miles as {{ type_amount() }}) as trip_miles,
    cast(trip_time as {{ dbt.type_int() }}) as trip_time,
    cast(base_passenger_fare as {{ type_amount() }}) as base_passenger_fare,
    cast(tolls as {{ type_amount() }}) as tolls,
    cast(bcf as {{ type_amount() }}) as bcf,
    cast(sales_tax as {{ type_amount() }}) as sales_tax,
    cast(congestion_surcharge as {{ type_amount() }}) as congestion_surcharge,
    cast(airport_fee as {{ type_amount() }}) as airport_fee,
    cast(tips as {{ type_amount() }}) as tips,
    cast(driver_pay as {{ type_amount() }}) as driver_pay,
    cast(cbd_congestion_fee as {{ type_amount() }}) as cbd_congestion_fee,
    shared_request_flag,
    shared_match_flag,
    access_a_ride_flag,
    wav_request_flag,
    wav_match_flag,
    source_month,
    source_file,
    cast(source_row as {{ dbt.type_bigint() }}) as source_row
from source
