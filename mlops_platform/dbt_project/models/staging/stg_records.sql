-- Landed records, one row per record id (the latest ingestion of a record wins).
with ranked as (
    select
        *,
        row_number() over (partition by record_id order by ingestion_date desc) as _ingestion_rank
    from {{ source('landing', 'raw_data') }}
)

select * exclude (_ingestion_rank)
from ranked
where _ingestion_rank = 1
