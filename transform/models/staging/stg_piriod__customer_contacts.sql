{#
  One row per contact of a customer, keyed by (customer_id, contact_id). Contacts live in
  the customer's `contacts` array; a customer without contacts has no row here. The
  customer's deletion flag comes along, so that live contacts are one filter away.
#}

with contacts as (

    {{ piriod_unnest_array(source('piriod', 'customers'), 'id', 'contacts') }}

),

customers as (

    select customer_id, is_deleted from {{ ref('stg_piriod__customers') }}

)

select
    cast(contacts.key as varchar) as customer_id,
    cast(contacts.element ->> 'id' as varchar) as contact_id,
    cast(contacts.position as integer) as contact_position,
    cast(contacts.element ->> 'name' as varchar) as name,
    cast(contacts.element ->> 'email' as varchar) as email,
    cast(contacts.element ->> 'phone' as varchar) as phone,
    customers.is_deleted as is_customer_deleted

from contacts
inner join customers on customers.customer_id = contacts.key
