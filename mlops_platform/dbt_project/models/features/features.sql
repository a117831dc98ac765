-- Model inputs from the spec: numeric features as double, categorical ones as text with an
-- explicit category for "missing". A view over stg_records: nothing to rebuild per run. The
-- feature_store step exports it per ingestion day as Parquet for Feast's offline store.
{{ config(materialized='view') }}

select
    record_id,
    event_timestamp,
    ingestion_date,
{%- for column in var('numeric_features') %}
    cast({{ adapter.quote(column) }} as double) as {{ adapter.quote(column) }},
{%- endfor %}
{%- for column in var('categorical_features') %}
    coalesce(cast({{ adapter.quote(column) }} as varchar), {{ sql_literal(var('missing_category')) }}) as {{ adapter.quote(column) }}{{ "," if not loop.last }}
{%- endfor %}
from {{ ref('stg_records') }}
