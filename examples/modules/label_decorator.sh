#!/bin/sh
# slaveRunTaskLabelDecorator: $1 = input JSON (task_info, executor_info, framework_info,
# slave_info), $2 = where to write the new Labels. Mesos REPLACES the task's labels with the
# answer: to keep the existing ones, copy them over (e.g. with jq:
#   jq '.task_info.labels // {labels: []} | .labels += [{key: "decorated", value: "yes"}]' "$1").
task_id=$(sed -n 's/.*"task_id":{"value":"\([^"]*\)".*/\1/p' "$1")
cat > "$2" <<JSON
{"labels":[{"key":"decorated-by","value":"examples/modules"},{"key":"task","value":"$task_id"}]}
JSON
