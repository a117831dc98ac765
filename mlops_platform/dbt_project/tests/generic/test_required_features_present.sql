{# Fails for each row missing a feature that the spec declares non-nullable. #}
{% test required_features_present(model) %}
select record_id
from {{ model }}
where false
{%- for column in var('required_features') %}
    or {{ adapter.quote(column) }} is null
{%- endfor %}
{% endtest %}
