#!/usr/bin/env bash
# Build the OpenTelemetry Collector that tests/test_docs.py validates the documented
# Collector configurations with: the official builder (ocb) and the components listed in
# deploy/otelcol/builder.yaml, one release, from the Go module proxy.
#
#   bash deploy/otelcol/build.sh        -> ~/.cache/stream-eval/otelcol/otelcol
#
# Needs Go (built here with 1.26) and the Go module proxy (GOPROXY, default proxy.golang.org). Takes a
# few minutes (most of it compiling); a no-op when the binary of this builder.yaml is
# there already. Environment:
#   STREAM_EVAL_OTELCOL_DIR   where to build (~/.cache/stream-eval/otelcol)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

readonly VERSION=0.165.0   # the builder's release; builder.yaml pins its components to it
readonly DIR=${STREAM_EVAL_OTELCOL_DIR:-${HOME:?HOME is not set}/.cache/stream-eval/otelcol}
readonly STAMP=$DIR/.builder-$(sha1sum builder.yaml | cut -c1-12)

command -v go >/dev/null || { echo "build.sh: Go is not installed (https://go.dev/dl/)" >&2; exit 1; }
if [[ -x $DIR/otelcol && -f $STAMP ]]; then
  echo "build.sh: $DIR/otelcol is up to date"
  exit 0
fi
mkdir -p "$DIR"
GOBIN=$DIR/bin go install "go.opentelemetry.io/collector/cmd/builder@v$VERSION"
# builder.yaml with the output path filled in (the --output-path flag is deprecated)
sed "s|^dist:$|dist:\n  output_path: $DIR/src|" builder.yaml >"$DIR/builder.yaml"
"$DIR/bin/builder" --config="$DIR/builder.yaml"
mv "$DIR/src/otelcol" "$DIR/otelcol"
rm -f "$DIR"/.builder-* && touch "$STAMP"
"$DIR/otelcol" --version
