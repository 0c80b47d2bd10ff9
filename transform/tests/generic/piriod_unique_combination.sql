{# Fails on each combination of `columns` held by more than one row (dbt_utils' test, without dbt_utils). #}
{% test piriod_unique_combination(model, columns) %}

select {{ columns | join(', ') }}, count(*) as rows_with_it
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
