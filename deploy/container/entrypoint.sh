#!/bin/sh
# The image's entrypoint: `reportgen <command> [args]`. `serve` listens on all interfaces on port 8000 (the port
# the image exposes and its HEALTHCHECK asks) unless its arguments say otherwise (argparse: the last --host wins).
set -eu
if [ "${1:-}" = serve ]; then
  shift
  set -- serve --host 0.0.0.0 --port 8000 "$@"
fi
exec reportgen "$@"
