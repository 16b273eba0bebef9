# The Huddle server as a container image: a static binary on an empty base,
# run as a non-root user. Build: docker build -t huddle .  (or podman build)
# Run:   docker run -p 8080:8080 -e HUDDLE_SECRET=... -e HUDDLE_API_KEY=... huddle
# Every flag is also an environment variable (HUDDLE_<FLAG>); see README.md.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG COMMIT=unknown
# CGO off: a static binary that needs no libc (cmd/huddle/static_test.go
# checks that it has no dynamic loader and runs in an empty root).
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.commit=${COMMIT}" -o /out/huddle ./cmd/huddle

FROM scratch
# CA certificates for rediss://, https:// RPC, hooks and webhooks.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/huddle /huddle
USER 65532:65532
ENV HUDDLE_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/huddle", "health"]
ENTRYPOINT ["/huddle"]
