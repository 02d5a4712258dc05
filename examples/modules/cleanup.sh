#!/bin/sh
# Isolator cleanup: the container is gone; undo what prepare/isolate set up. A non-zero exit
# is logged as a failed destroy.
container_id=$(sed -n 's/.*"container_id":{"value":"\([^"]*\)".*/\1/p' "$1")
echo "example isolator: container $container_id cleaned up" >&2
