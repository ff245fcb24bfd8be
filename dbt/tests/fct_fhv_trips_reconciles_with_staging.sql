-- fct_fhv_trips holds exactly the staged fhv and fhvhv rows minus the documented exclusions, month by month.
{{ reconciles_with_staging('fct_fhv_trips', ['stg_fhv_tripdata', 'stg_fhvhv_tripdata']) }}
