{#
  One row per Piriod customer, as the loader keeps it: nested objects read out into typed
  columns, conventional names, and the loader's soft delete as `is_deleted`. A customer
  deleted in Piriod keeps its row (flagged), so that facts keyed on it still join.
#}
{%- set source_columns = piriod_column_names(source('piriod', 'customers')) -%}

with customers as (

    select * from {{ source('piriod', 'customers') }}

)

select
    cast(id as varchar) as customer_id,
    cast(name as varchar) as name,
    cast(email as varchar) as email,
    cast(phone as varchar) as phone,
    cast(address as varchar) as address,
    cast(website as varchar) as website,
    cast(tax_id as varchar) as tax_id,
    cast(tax_settings as varchar) as tax_settings,
    cast(currency as varchar) as currency_code,

    cast(country ->> 'id' as varchar) as country_code,
    cast(country ->> 'name' as varchar) as country_name,
    cast(state ->> 'id' as varchar) as state_code,
    cast(state ->> 'name' as varchar) as state_name,

    cast(aggregations ->> 'balance' as decimal(38, 6)) as balance,
    cast(aggregations ->> 'sales' as decimal(38, 6)) as sales,
    cast(aggregations ->> 'sales_current_period' as decimal(38, 6)) as sales_current_period,

    cast({{ piriod_array_length('contacts') }} as integer) as contact_count,
    cast({{ piriod_array_length('sources') }} as integer) as payment_source_count,
    metadata,

    cast(created as timestamp) as created_at,
    cast(updated as timestamp) as updated_at,

    {{ piriod_column_or_null(source_columns, '_sdc_deleted_at', 'timestamp') }} is not null as is_deleted,
    {{ piriod_column_or_null(source_columns, '_sdc_deleted_at', 'timestamp') }} as deleted_at,
    {{ piriod_column_or_null(source_columns, '_sdc_extracted_at', 'timestamp') }} as extracted_at,
    {{ piriod_column_or_null(source_columns, '_sdc_batched_at', 'timestamp') }} as loaded_at

from customers
