{#
  The Singer `_sdc_*` columns depend on the loader and its settings: target-postgres writes
  `_sdc_deleted_at` as a timestamp (set by the reconcile job's soft delete), target-duckdb
  as text (set by the README's DuckDB recipe), and neither writes any of them when its
  metadata setting (`add_record_metadata`, `add_metadata_columns`) is off. A model reads
  them through `piriod_column_or_null`, so that a missing column is a typed NULL, not an error.
#}

{# The lower-cased column names of `relation`, as the warehouse has them now. #}
{% macro piriod_column_names(relation) %}
  {%- if not execute -%}
    {{- return([]) -}}
  {%- endif -%}
  {{- return(adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) -}}
{% endmacro %}

{# `column` cast to `type` if `present` (a list from piriod_column_names) has it, else NULL. #}
{% macro piriod_column_or_null(present, column, type) -%}
  {%- if column in present -%}
    cast({{ column }} as {{ type }})
  {%- else -%}
    cast(null as {{ type }})
  {%- endif -%}
{%- endmacro %}
