{#
  Where DuckDB and PostgreSQL differ on the loaded table. target-duckdb writes `contacts`
  and `sources` as one JSON value (a JSON array); target-postgres writes them as `jsonb[]`,
  a PostgreSQL array of jsonb. Objects (`country`, `aggregations`, ...) are JSON / jsonb on
  both, and `->>` reads a key of either, so the models need no macro for them.
#}

{# The number of elements of an array column (0 for SQL or JSON null). #}
{% macro piriod_array_length(column) %}
  {{- return(adapter.dispatch('piriod_array_length')(column)) -}}
{% endmacro %}

{% macro duckdb__piriod_array_length(column) -%}
  coalesce(json_array_length({{ column }}), 0)
{%- endmacro %}

{% macro postgres__piriod_array_length(column) -%}
  coalesce(cardinality({{ column }}), 0)
{%- endmacro %}


{#
  One row per element of an array column of `relation`: `key` (the row's key),
  `element` (the element, JSON / jsonb) and `position` (1 for the first element).
  Rows whose array is empty or null give no row.
#}
{% macro piriod_unnest_array(relation, key, column) %}
  {{- return(adapter.dispatch('piriod_unnest_array')(relation, key, column)) -}}
{% endmacro %}

{% macro duckdb__piriod_unnest_array(relation, key, column) -%}
  select
      {{ key }} as key,
      unnest(cast({{ column }} as json[])) as element,
      generate_subscripts(cast({{ column }} as json[]), 1) as position
  from {{ relation }}
  where json_array_length({{ column }}) > 0
{%- endmacro %}

{% macro postgres__piriod_unnest_array(relation, key, column) -%}
  select
      rows.{{ key }} as key,
      elements.element,
      elements.position
  from {{ relation }} as rows
  cross join lateral unnest(rows.{{ column }}) with ordinality as elements(element, position)
{%- endmacro %}


{# Whether `expression` matches the regular expression `pattern` as a whole. #}
{% macro piriod_full_match(expression, pattern) %}
  {{- return(adapter.dispatch('piriod_full_match')(expression, pattern)) -}}
{% endmacro %}

{% macro duckdb__piriod_full_match(expression, pattern) -%}
  regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__piriod_full_match(expression, pattern) -%}
  ({{ expression }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}
