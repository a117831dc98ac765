-- Landed records of the days that passed every gate in var('raw_data_gates'), one row per
-- record id (the latest ingestion of a record wins). A day without a pass from each gate
-- (it failed one, or was rewritten and not judged yet) is left out.
--
-- Incremental on the ingestion day: a run rebuilds only the records of the days judged since
-- the last build (`_gated_at` holds the verdict time a row was built from) and of the days
-- held here that no longer pass; delete+insert on record_id replaces older ingestions of the
-- same records, and the post-hook drops every row of a day that does not pass now.
-- `_built_at` (the build's start) marks the rows a build wrote: the tests judge only those.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='record_id',
    on_schema_change='fail',
    post_hook="delete from {{ this }} where cast(ingestion_date as date) not in (select ingestion_date from ({{ gated_days() }}))",
) }}
{%- set raw_data = source('landing', 'raw_data') %}

with gated as ({{ gated_days() }}),

{%- if is_incremental() %}

changed_days as (
    select ingestion_date from ({{ judged_days() }})
    where judged_at > (select coalesce(max(_gated_at), '-infinity'::timestamptz) from {{ this }})
    union
    select distinct cast(ingestion_date as date) from {{ this }}
    where cast(ingestion_date as date) not in (select ingestion_date from gated)
),

affected as (
    select record_id from {{ raw_data }}
    where cast(ingestion_date as date) in (select ingestion_date from changed_days)
    union
    select record_id from {{ this }}
    where cast(ingestion_date as date) in (select ingestion_date from changed_days)
),
{%- endif %}

ranked as (
    select
        records.*,
        gated.gated_at as _gated_at,
        cast('{{ run_started_at }}' as timestamptz) as _built_at,
        row_number() over (partition by records.record_id order by records.ingestion_date desc) as _ingestion_rank
    from {{ raw_data }} as records
    join gated on cast(records.ingestion_date as date) = gated.ingestion_date
    {%- if is_incremental() %}
    where records.record_id in (select record_id from affected)
    {%- endif %}
)

select * exclude (_ingestion_rank)
from ranked
where _ingestion_rank = 1
