#!/bin/sh
# Isolator usage: called for every container on each /monitor/statistics request. Answer a
# ResourceStatistics (timestamp is required); its fields are merged into the agent's. Here:
# the sandbox's disk usage.
dir=$(sed -n 's/.*"directory":"\([^"]*\)".*/\1/p' "$1")
kib=$(du -sk "$dir" 2>/dev/null | cut -f1)
cat > "$2" <<JSON
{"timestamp":$(date +%s),"disk_used_bytes":$(( ${kib:-0} * 1024 ))}
JSON
