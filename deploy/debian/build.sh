#!/usr/bin/env bash
# Builds vouch's Debian package: dist/vouch_VERSION_ARCH.deb (or into the
# directory given as $1). CI (.ci/run) runs it, then installs the result.
#
#   the binary     CGO_ENABLED=0 go build, version from version.sh
#   the man pages  vouch(8), vouch.yaml(5) from docs/man and
#                  docs/configuration.md (mangen), checked with man --warnings
#   the package    go tool nfpm with nfpm.yaml (no binary downloads)
#
# Needs Go, git and man (Debian package man-db).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-dist}

version=$(deploy/debian/version.sh)
date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%d)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$stage/vouch" ./cmd/vouch
if ! "$stage/vouch" version | grep -q "^vouch $version "; then
	echo "build.sh: the binary does not report version $version: $("$stage/vouch" version)" >&2
	exit 1
fi

mkdir "$stage/man"
go run ./deploy/debian/mangen -out "$stage/man" -version "$version" -date "$date"
if ! command -v man >/dev/null; then
	echo "build.sh: man not found (apt-get install man-db): the pages must be checked" >&2
	exit 1
fi
for page in "$stage"/man/*; do
	# Empty when the page renders cleanly at 80 columns.
	warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
	if [ -n "$warnings" ]; then
		echo "build.sh: $page renders with warnings:" >&2
		echo "$warnings" >&2
		exit 1
	fi
	gzip -9n "$page"
done

mkdir -p "$out"
VOUCH_VERSION=$version VOUCH_STAGE=$stage GOARCH=$(go env GOARCH) \
	go tool nfpm package --config deploy/debian/nfpm.yaml --packager deb --target "$out/"
