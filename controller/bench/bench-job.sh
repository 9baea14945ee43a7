#!/bin/sh
# The benchmark's job: the cheapest pod that still honours the job-image's contract as far as the
# controller can tell: one curl process PUTs a result and a manifest through the presigned URLs.
# (It does not GET the input: with 1,000 pods as local processes on a small machine, every process
# counts, and the controller's side of the flow is the same.)
exec curl -sSf -o /dev/null -o /dev/null -H "Content-Type: application/octet-stream" \
  -T "$BENCH_DIR/output.ogg" "$OUTPUT_URL" -T "$BENCH_DIR/manifest.json" "$MANIFEST_URL"
