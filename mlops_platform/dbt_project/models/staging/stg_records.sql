-- Landed records of the days that passed every gate in var('raw_data_gates'), one row per
-- record id (the latest ingestion of a record wins). A day without a pass from each gate
-- (it failed one, or was rewritten and not judged yet) is left out. The verdicts are in
-- raw_data_gates, beside raw_data (written by the raw_data step and its checks).
{%- set raw_data = source('landing', 'raw_data') %}
{%- set verdicts = api.Relation.create(
    database=raw_data.database, schema=raw_data.schema, identifier='raw_data_gates') %}
{%- set gates = var('raw_data_gates') %}
{%- if not gates %}{{ exceptions.raise_compiler_error("var raw_data_gates must name at least one gate") }}{% endif %}

with passed_days as (
    select ingestion_date
    from {{ verdicts }}
    where check_name in ({% for gate in gates %}{{ sql_literal(gate) }}{{ ", " if not loop.last }}{% endfor %})
    group by ingestion_date
    having count(distinct check_name) = {{ gates | length }} and bool_and(passed)
),

ranked as (
    select
        *,
        row_number() over (partition by record_id order by ingestion_date desc) as _ingestion_rank
    from {{ raw_data }}
    where cast(ingestion_date as date) in (select ingestion_date from passed_days)
)

select * exclude (_ingestion_rank)
from ranked
where _ingestion_rank = 1
