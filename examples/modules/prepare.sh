#!/bin/sh
# Isolator prepare: $1 = {"container_config": …, "container_id": …}. May answer with a
# ContainerLaunchInfo (environment, pre_exec_commands, working_directory); a non-zero exit
# fails the launch with the error file ($3) as the cause.
container_id=$(sed -n 's/.*"container_id":{"value":"\([^"]*\)".*/\1/p' "$1")
if [ -z "$container_id" ]; then
  echo "no container id in the input" > "$3"
  exit 1
fi
cat > "$2" <<JSON
{"environment":{"variables":[{"name":"EXAMPLE_CONTAINER_ID","value":"$container_id"}]}}
JSON
