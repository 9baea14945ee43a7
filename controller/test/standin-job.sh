#!/bin/sh
# A stand-in for the job-image in the controller's tests: the same contract (environment, presigned
# GET/PUTs, manifest, exit codes, termination message), none of the GPU work. The first line of the
# input steers it, so each test picks its own outcome by what the "user" sends:
#   EXIT=<n>    fail with exit code n (a line for the termination log after it, optional)
#   SLEEP=<s>   take s seconds before producing the result
# anything else: the "cleaned" result is a header valid for OUTPUT_FORMAT followed by the input.
set -u
in="$WORK_DIR/input"
out="$WORK_DIR/output"
fail() {
  printf '%s\n' "$2" >"$TERMINATION_LOG"
  exit "$1"
}
curl -sSf -o "$in" "$INPUT_URL" || fail 1 "download of the input failed"
first=$(head -n 1 "$in" | tr -d '\r')
case "$first" in
EXIT=*)
  code=${first#EXIT=}
  reason=$(sed -n 2p "$in")
  fail "$code" "${reason:-stand-in failure with exit code $code}"
  ;;
SLEEP=*) sleep "${first#SLEEP=}" ;;
esac
case "$OUTPUT_FORMAT" in
ogg-opus) mime=audio/ogg; printf 'OggS\000\002OpusHead\001\002' >"$out" ;;
mp3) mime=audio/mpeg; printf 'ID3\004\000' >"$out" ;;
m4a) mime=audio/mp4; printf '\000\000\000\030ftypM4A ' >"$out" ;;
mp4) mime=video/mp4; printf '\000\000\000\030ftypisom' >"$out" ;;
*) fail 1 "unknown OUTPUT_FORMAT $OUTPUT_FORMAT" ;;
esac
printf 'cleaned:' >>"$out"
cat "$in" >>"$out"
rm -f "$in"
size=$(wc -c <"$out" | tr -d ' ')
curl -sSf -X PUT -H "Content-Type: $mime" --data-binary "@$out" "$OUTPUT_URL" >/dev/null || fail 1 "upload of the result failed"
printf '{"schemaVersion":1,"model":"%s","device":"cpu","mediaSeconds":4.2,"mimeType":"%s","sizeBytes":%s,"separateSeconds":0.21,"realTimeFactor":0.05,"totalSeconds":0.5,"traceparent":"%s"}' \
  "$MODEL_NAME" "$mime" "$size" "${TRACEPARENT:-}" >"$WORK_DIR/manifest.json"
curl -sSf -X PUT -H "Content-Type: application/json" --data-binary "@$WORK_DIR/manifest.json" "$MANIFEST_URL" >/dev/null || fail 1 "upload of the manifest failed"
rm -f "$out" "$WORK_DIR/manifest.json"
