#!/bin/sh
# Isolator watch: runs every isolator_watch_frequence seconds. Writing any JSON object to $2
# is a ContainerLimitation: the container is destroyed and its tasks fail with the reason and
# message. Here: a task that creates LIMIT in its sandbox gets itself killed.
dir=$(sed -n 's/.*"directory":"\([^"]*\)".*/\1/p' "$1")
if [ -n "$dir" ] && [ -e "$dir/LIMIT" ]; then
  cat > "$2" <<JSON
{"message":"LIMIT file found in the sandbox","reason":"REASON_CONTAINER_LIMITATION_DISK"}
JSON
fi
