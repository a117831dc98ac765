{# A test's `where` config, with two placeholders for incremental models: `__this__` is the
   tested relation; `__built_this_run__` keeps the rows its latest build wrote (`_built_at`,
   the build's start), so a daily run tests the day it built, not the whole history. A full
   build writes every row, so there the test sees the whole table. Overrides dbt's own macro
   of this name. #}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set built = '_built_at = (select max(_built_at) from ' ~ relation ~ ')' -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where | replace('__built_this_run__', built) | replace('__this__', relation | string) ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
