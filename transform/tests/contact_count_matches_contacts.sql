-- Each customer's contact_count is the number of its rows in stg_piriod__customer_contacts:
-- the two models read the same array, on both warehouses.
select customers.customer_id, customers.contact_count, count(contacts.contact_position) as contact_rows
from {{ ref('stg_piriod__customers') }} as customers
left join {{ ref('stg_piriod__customer_contacts') }} as contacts
    on contacts.customer_id = customers.customer_id
group by customers.customer_id, customers.contact_count
having customers.contact_count <> count(contacts.contact_position)
