#!/bin/sh
# slaveRemoveExecutorHook: $1 = {"executor_info": …, "framework_info": …}. The output is
# ignored; a non-zero exit is only logged. stdout/stderr go to the agent's log.
executor_id=$(sed -n 's/.*"executor_id":{"value":"\([^"]*\)".*/\1/p' "$1")
echo "example hook: executor $executor_id removed" >&2
