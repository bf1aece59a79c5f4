#!/usr/bin/env bash
# Refresh the third-party browser libraries that ship inside the package (flexi/web/static/vendor).
# Flexi's web UI needs no Node build at install time: these files are committed. Run this script
# (needs npm and the npm registry) to update them, then review the diff and commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
MARKED=18.2.1 DOMPURIFY=3.4.18 HLJS=11.12.0 SWAGGER_UI=5.35.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
  "marked@$MARKED" "dompurify@$DOMPURIFY" "@highlightjs/cdn-assets@$HLJS" "swagger-ui-dist@$SWAGGER_UI")
dest=flexi/web/static/vendor
mkdir -p "$dest"
cp "$work/node_modules/marked/lib/marked.esm.js" "$dest/marked.esm.js"
cp "$work/node_modules/marked/LICENSE" "$dest/marked.LICENSE"
cp "$work/node_modules/dompurify/dist/purify.es.mjs" "$dest/purify.es.mjs"
cp "$work/node_modules/dompurify/LICENSE" "$dest/dompurify.LICENSE"
cp "$work/node_modules/@highlightjs/cdn-assets/es/highlight.min.js" "$dest/highlight.min.js"
cp "$work/node_modules/@highlightjs/cdn-assets/LICENSE" "$dest/highlight.LICENSE"
cp "$work/node_modules/swagger-ui-dist/swagger-ui-bundle.js" "$dest/swagger-ui-bundle.js"  # the API docs page (/docs)
cp "$work/node_modules/swagger-ui-dist/swagger-ui.css" "$dest/swagger-ui.css"
cp "$work/node_modules/swagger-ui-dist/LICENSE" "$dest/swagger-ui.LICENSE"
sed -i -e 's|^//# sourceMappingURL=.*$||' "$dest/marked.esm.js" "$dest/purify.es.mjs" "$dest/swagger-ui-bundle.js"
sed -i -e 's|/\*# sourceMappingURL=.*\*/||' "$dest/swagger-ui.css"
echo "vendored: marked $MARKED, DOMPurify $DOMPURIFY, highlight.js $HLJS, Swagger UI $SWAGGER_UI → $dest"
