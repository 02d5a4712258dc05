#!/bin/sh
# slaveExecutorEnvironmentDecorator: $1 = {"executor_info": …}, $2 = an Environment whose
# variables are set in the executor's environment (the task inherits them).
executor_id=$(sed -n 's/.*"executor_id":{"value":"\([^"]*\)".*/\1/p' "$1")
cat > "$2" <<JSON
{"variables":[{"name":"EXAMPLE_HOOK","value":"1"},{"name":"EXAMPLE_EXECUTOR_ID","value":"$executor_id"}]}
JSON
