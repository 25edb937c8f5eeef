#!/usr/bin/env bash
# Vendor the interactive API docs' assets (Swagger UI, ReDoc) from the npm registry, pinned, so that /docs and
# /redoc work offline and in images built with --network=none. `make vendor-docs` runs this; the files are
# committed (api/static/docs/), with their licences and sha256 in VERSIONS.txt.
set -euo pipefail
SWAGGER_UI=5.35.0
REDOC=2.5.4
here=$(cd "$(dirname "$0")" && pwd)
target="$here/docs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "redoc@$REDOC" >/dev/null
mkdir swagger redoc
tar xzf "swagger-ui-dist-$SWAGGER_UI.tgz" -C swagger
tar xzf "redoc-$REDOC.tgz" -C redoc
rm -rf "$target" && mkdir -p "$target"
cp swagger/package/swagger-ui-bundle.js swagger/package/swagger-ui.css swagger/package/favicon-32x32.png "$target/"
cp swagger/package/LICENSE "$target/LICENSE-swagger-ui"
cp redoc/package/bundles/redoc.standalone.js "$target/"
cp redoc/package/LICENSE "$target/LICENSE-redoc"
{
  echo "swagger-ui-dist $SWAGGER_UI (Apache-2.0), redoc $REDOC (MIT), from the npm registry by api/static/vendor.sh"
  (cd "$target" && sha256sum swagger-ui-bundle.js swagger-ui.css favicon-32x32.png redoc.standalone.js)
} >"$target/VERSIONS.txt"
echo "vendored into $target:"; ls -la "$target"
