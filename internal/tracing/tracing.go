// Package tracing sets up OpenTelemetry traces from the standard OTEL_*
// environment: when an OTLP endpoint is named, spans go to it over
// OTLP/HTTP, and W3C trace context is propagated in and out. It also gives
// the instrumented pieces the rest of the server uses: an HTTP handler
// wrapper and an HTTP client transport (the API; RPC, hook and webhook
// calls). Without an endpoint everything here is a no-op.
package tracing

import (
	"context"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of Huddle's own spans.
const Name = "github.com/huddle-rt/huddle"

// Enabled reports whether the environment asks for traces:
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set, and OTEL_TRACES_EXPORTER is not "none".
func Enabled() bool {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "none" || os.Getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the global tracer provider and propagator when Enabled,
// and returns what flushes and stops it (call it at exit). The exporter
// reads the other standard variables itself (headers, timeout,
// compression); the service is OTEL_SERVICE_NAME, else "huddle", and
// OTEL_RESOURCE_ATTRIBUTES adds to it. version names the build.
func Setup(ctx context.Context, version string) (shutdown func(context.Context) error, err error) {
	if !Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(cmpOr(os.Getenv("OTEL_SERVICE_NAME"), "huddle")),
		semconv.ServiceVersion(version),
	))
	if err != nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Tracer returns Huddle's tracer (a no-op one until Setup installs a
// provider).
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Handler wraps an HTTP handler so that each request is a server span
// named after its method and path, continuing the caller's trace context.
func Handler(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "huddle.http",
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
}

// Transport wraps an HTTP client transport (nil: http.DefaultTransport) so
// that each call is a client span and carries the trace context
// (traceparent) to the server it calls.
func Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt)
}

// Child starts a span under ctx's span, and only there: work that no
// traced request caused (background Redis traffic, pings) makes no root
// spans. The returned span is a no-op when ctx has no recording span.
func Child(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return Tracer().Start(ctx, name, trace.WithSpanKind(kind))
}
