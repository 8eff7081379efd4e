#!/usr/bin/env bash
# Smoke test on the box: place a loopback call through the real FreeSWITCH to a number the
# controller owns, let recorded speech talk to the assistant, and check through the REST API
# that the call reached `ended` with a transcript. Exit status 0 only when it did.
#
# Environment (defaults fit the vagrant box):
#   ESL_API_URL        REST API base URL                  (http://127.0.0.1:8080)
#   ESL_API_KEY        API key; else read from ESL_API_KEY_FILE (/etc/esl-controller/api-key)
#   SMOKE_NUMBER       DID routed to the controller       (15557654321)
#   SMOKE_AUDIO        caller speech, 8 kHz mono WAV      (/usr/share/esl-controller/smoke/caller.wav)
#   SMOKE_TIMEOUT      seconds to wait for `ended`        (90)
#   FS_CLI             fs_cli command                     (fs_cli)
set -euo pipefail

API="${ESL_API_URL:-http://127.0.0.1:8080}"
KEY_FILE="${ESL_API_KEY_FILE:-/etc/esl-controller/api-key}"
NUMBER="${SMOKE_NUMBER:-15557654321}"
AUDIO="${SMOKE_AUDIO:-/usr/share/esl-controller/smoke/caller.wav}"
TIMEOUT="${SMOKE_TIMEOUT:-90}"
FS_CLI="${FS_CLI:-fs_cli}"

die() { printf 'smoke: FAIL: %s\n' "$*" >&2; exit 1; }
log() { printf 'smoke: %s\n' "$*"; }

KEY="${ESL_API_KEY:-}"
if [ -z "${KEY}" ]; then
  [ -r "${KEY_FILE}" ] || die "no ESL_API_KEY and ${KEY_FILE} is not readable"
  KEY="$(head -n 1 "${KEY_FILE}")"
fi
[ -r "${AUDIO}" ] || die "caller audio ${AUDIO} missing"
command -v "${FS_CLI}" >/dev/null || die "${FS_CLI} not found"

# api METHOD PATH [JSON]: prints the response body; fails on HTTP >= 400
api() {
  local args=(-fsS --max-time 10 -X "$1" -H "Authorization: Bearer ${KEY}")
  if [ $# -ge 3 ]; then
    args+=(-H "Content-Type: application/json" --data "$3")
  fi
  curl "${args[@]}" "${API}$2"
}

# field NAME: read one top-level field of the JSON object on stdin ("" when absent)
field() {
  python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

# --- fixtures: an assistant and the phone number, created once and reused ------------------
phone_id="$(api GET "/phone-number?limit=100" | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if (p.get("number") or "").lstrip("+") in (sys.argv[1], "1" + sys.argv[1]):
        print(p["id"]); break
' "${NUMBER}")"
if [ -z "${phone_id}" ]; then
  log "creating the smoke assistant, trunk credential and phone number +${NUMBER}"
  assistant_id="$(api POST /assistant '{
    "name": "vagrant smoke",
    "firstMessage": "Hello, this is the smoke test assistant. How can I help?",
    "artifactPlan": {"pcapEnabled": true, "recordingEnabled": true},
    "maxDurationSeconds": 60
  }' | field id)"
  cred_id="$(api POST /credential '{
    "provider": "byo-sip-trunk", "name": "loopback",
    "gateways": [{"ip": "127.0.0.1", "inboundEnabled": true, "outboundEnabled": false}]
  }' | field id)"
  phone_id="$(api POST /phone-number "{
    \"provider\": \"byo-phone-number\", \"name\": \"smoke\", \"number\": \"+${NUMBER}\",
    \"credentialId\": \"${cred_id}\", \"assistantId\": \"${assistant_id}\"
  }" | field id)"
fi
[ -n "${phone_id}" ] || die "no phone number id"

# --- the call --------------------------------------------------------------------------------
since="$(date -u +%Y-%m-%dT%H:%M:%S.000Z)"
# The loopback leg runs the dialplan's public context (-> socket to the controller); the other
# leg plays the caller: 2 s of listening, the question, then 8 s for the answer, then hangs up.
play="file_string://silence_stream://2000!${AUDIO}!silence_stream://8000"
log "originate loopback/${NUMBER}/public"
reply="$("${FS_CLI}" -x "originate {origination_caller_id_number=15551230001,originate_timeout=20}loopback/${NUMBER}/public &playback(${play})")"
case "${reply}" in
  +OK*) log "FreeSWITCH: ${reply}" ;;
  *) die "originate: ${reply}" ;;
esac

deadline=$((SECONDS + TIMEOUT))
call_json=""
status=""
while [ "${SECONDS}" -lt "${deadline}" ]; do
  call_json="$(api GET "/call?phoneNumberId=${phone_id}&createdAtGt=${since}&limit=1" |
    python3 -c 'import json,sys; c=json.load(sys.stdin); print(json.dumps(c[0]) if c else "{}")')"
  status="$(printf '%s' "${call_json}" | field status)"
  [ "${status}" = "ended" ] && break
  sleep 2
done
[ "${status}" = "ended" ] || die "call status is '${status:-none}' after ${TIMEOUT}s"

call_id="$(printf '%s' "${call_json}" | field id)"
reason="$(printf '%s' "${call_json}" | field endedReason)"
call_json="$(api GET "/call/${call_id}")"
transcript="$(printf '%s' "${call_json}" | python3 -c '
import json, sys
c = json.load(sys.stdin)
print(c.get("transcript") or (c.get("artifact") or {}).get("transcript") or "")')"
log "call ${call_id} ended: ${reason}"
printf '%s\n' "${transcript}" | sed 's/^/smoke:   /'
[ -n "${transcript}" ] || die "the call has no transcript"
printf '%s' "${transcript}" | grep -q '^User:' || die "no caller turn in the transcript"
log "PASS"
