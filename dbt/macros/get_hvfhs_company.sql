{#- TLC data dictionary (high volume FHV): hvfhs_license_num → the company behind the trip. -#}
{% macro get_hvfhs_company(license_num) -%}
    case {{ license_num }}
        when 'HV0002' then 'Juno'
        when 'HV0003' then 'Uber'
        when 'HV0004' then 'Via'
        when 'HV0005' then 'Lyft'
        else 'Other'
    end
{%- endmacro %}
