#!/bin/sh
# A no-op agent for throughput benchmarks: real stream-json (init, result), exit 0, in microseconds.
# Appends the pulse id to $NOOP_AGENT_LOG so the benchmark can check each pulse ran exactly once;
# $NOOP_AGENT_SECONDS, when set, makes each run last that long (tests that kill workers mid-run).
[ -n "${NOOP_AGENT_LOG:-}" ] && echo "${REEVE_PULSE_ID:-}" >>"$NOOP_AGENT_LOG"
[ -n "${NOOP_AGENT_SECONDS:-}" ] && sleep "$NOOP_AGENT_SECONDS"
echo '{"type":"system","subtype":"init","session_id":"00000000-0000-4000-8000-000000000002"}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"00000000-0000-4000-8000-000000000002","num_turns":1}'
