-- The label as 0/1 (1 = the spec's positive class), keyed and timed like the features.
-- A view over stg_records: nothing to rebuild per run.
{{ config(materialized='view') }}

select
    record_id,
    event_timestamp,
    ingestion_date,
    case
        when cast({{ adapter.quote(var('label_column')) }} as varchar) = {{ sql_literal(var('positive_class')) }}
        then 1 else 0
    end as label
from {{ ref('stg_records') }}
where {{ adapter.quote(var('label_column')) }} is not null
