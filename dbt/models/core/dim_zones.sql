select
    cast(location_id as {{ dbt.type_int() }}) as location_id,
    borough,
    zone,
    replace(service_zone, 'Boro', 'Green') as service_zone
from {{ source('taxi_raw', 'taxi_zone_lookup') }}
