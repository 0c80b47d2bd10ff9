{#
  Fails on the rows whose `column_name` is not null and does not match `pattern` as a
  whole: the shape a column's values must have (a code, an id), without dbt packages.
#}
{% test piriod_shape(model, column_name, pattern) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and not {{ piriod_full_match(column_name, pattern) }}

{% endtest %}
