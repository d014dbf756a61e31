#!/bin/sh
# Prints vouch's version for the checkout, in a form that is both a Debian
# package version and what "vouch version" reports (build.sh passes it to
# go build -ldflags "-X main.version=..."):
#
#   tag v0.1.0 on HEAD            0.1.0
#   3 commits after v0.1.0        0.1.0+git3.abc1234      (sorts after 0.1.0)
#   no v* tag at all              0.0.0~git20261201.abc1234 (commit date, UTC;
#                                 sorts before any release)
#   uncommitted changes           ...+dirty
#
# Run from anywhere inside the repository; needs git.
set -eu
cd "$(dirname "$0")"
hash=$(git rev-parse --short=7 HEAD)
if desc=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
	# v0.1.0-3-gabc1234: tag, commits since, hash.
	rest=${desc%-g*}
	n=${rest##*-}
	tag=${rest%-*}
	version=${tag#v}
	if [ "$n" != 0 ]; then
		version=$version+git$n.$hash
	fi
else
	date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d)
	version=0.0.0~git$date.$hash
fi
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	version=$version+dirty
fi
echo "$version"
