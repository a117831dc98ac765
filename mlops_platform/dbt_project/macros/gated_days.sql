{# The days of raw_data on which every gate in var('raw_data_gates') recorded a pass, with
   the time of the latest verdict (`gated_at`). The verdicts live in raw_data_gates, beside
   raw_data (written by the raw_data step and its checks). #}
{% macro gated_days() -%}
{%- set raw_data = source('landing', 'raw_data') %}
{%- set verdicts = api.Relation.create(
    database=raw_data.database, schema=raw_data.schema, identifier='raw_data_gates') %}
{%- set gates = var('raw_data_gates') %}
{%- if not gates %}{{ exceptions.raise_compiler_error("var raw_data_gates must name at least one gate") }}{% endif %}
select ingestion_date, max(checked_at) as gated_at
from {{ verdicts }}
where check_name in ({% for gate in gates %}{{ sql_literal(gate) }}{{ ", " if not loop.last }}{% endfor %})
group by ingestion_date
having count(distinct check_name) = {{ gates | length }} and bool_and(passed)
{%- endmacro %}

{# The latest verdict time of every judged day, passed or not. #}
{% macro judged_days() -%}
{%- set raw_data = source('landing', 'raw_data') %}
select ingestion_date, max(checked_at) as judged_at
from {{ api.Relation.create(database=raw_data.database, schema=raw_data.schema, identifier='raw_data_gates') }}
group by ingestion_date
{%- endmacro %}
