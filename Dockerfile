# vouch as a container image: a static binary on distroless/static, run as
# an unprivileged numeric user. Build from the repository root:
#
#   docker build --build-arg VERSION=$(deploy/debian/version.sh) -t vouch .
#
# No "# syntax=" line: it would make the build fetch a Dockerfile frontend
# image from the network. RUN --mount needs only the frontend built into
# BuildKit (Docker 23 and later build with it by default).
#
# The image listens beyond loopback (a container's loopback is its own), so
# the milter port must be reachable only by your MTAs: see
# docs/deployment.md ("Containers and trust").

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=devel
# Static: the runtime image has no C library. deploy/prometheus builds its
# test binary with this very command and checks the result is static.
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vouch ./cmd/vouch \
    && /out/vouch version

# static-debian12 has no shell, no package manager, no libc; vouch needs
# none of them (DNS is its own resolver; no TLS, so no CA certificates).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
LABEL org.opencontainers.image.title="vouch" \
      org.opencontainers.image.description="Milter checking iprev, HELO and SPF for Postfix and Sendmail" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/vouch /usr/local/bin/vouch
# 65532 is distroless's "nonroot"; numeric, so Kubernetes' runAsNonRoot can
# verify it without reading /etc/passwd.
USER 65532:65532
# 8895: milter (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER).
# 9895: /metrics, /healthz, /readyz.
EXPOSE 8895 9895
# "vouch healthcheck" asks /readyz on 127.0.0.1:9895 (the image has no
# shell and no curl). With your own -config and another metrics port, add
# "-metrics.listen 127.0.0.1:PORT" here.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/vouch", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/vouch"]
# Embedded defaults, but listening on every address: inside a container
# 127.0.0.1 is unreachable from the MTA. Mount a configuration and add
# "-config /etc/vouch/vouch.yaml" to set trusted_networks and the rest.
CMD ["serve", "-milter.listen", "inet:8895@0.0.0.0", "-metrics.listen", "0.0.0.0:9895"]
