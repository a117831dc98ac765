{# A string from the dataset spec as a safely quoted SQL literal. #}
{% macro sql_literal(value) -%}
'{{ value | string | replace("'", "''") }}'
{%- endmacro %}
