{# Fails when a label column holds fewer than two classes: nothing to learn from. #}
{% test both_classes_present(model, column_name) %}
select count(distinct {{ column_name }}) as classes
from {{ model }}
having count(distinct {{ column_name }}) < 2
{% endtest %}
