-- The label as 0/1 (1 = the spec's positive class), keyed and timed like the features.
select
    record_id,
    event_timestamp,
    case
        when cast({{ adapter.quote(var('label_column')) }} as varchar) = {{ sql_literal(var('positive_class')) }}
        then 1 else 0
    end as label
from {{ ref('stg_records') }}
where {{ adapter.quote(var('label_column')) }} is not null
