#!/bin/bash
# A no-op agent for dispatch-latency benchmarks. Its first act notes the time ($EPOCHREALTIME needs no
# fork) in $FAKE_AGENT_LOG, in tests/support/fake_agent.py's format: bash is running its first line about 1 ms
# after the spawn, where a Python agent needs ~7 ms of interpreter start-up first.
started=$EPOCHREALTIME
printf '{"pulse_id": "%s", "t": %s}\n' "${REEVE_PULSE_ID:-}" "${started/,/.}" >>"$FAKE_AGENT_LOG"
echo '{"type":"system","subtype":"init","session_id":"00000000-0000-4000-8000-000000000001"}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"00000000-0000-4000-8000-000000000001","num_turns":1}'
