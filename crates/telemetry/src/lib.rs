//! How flowmerge processes report.
//!
//! - Logs: `tracing`, filtered by `FLOWMERGE_LOG`; human-readable on a terminal, JSON lines
//!   otherwise (containers, log shippers).
//! - Traces and metrics: OpenTelemetry over OTLP, configured only by the standard variables
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!   `OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf` (default) or `grpc`, `OTEL_SERVICE_NAME`,
//!   `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`). With no endpoint
//!   set nothing is installed: no exporter, no thread, no cost beyond `tracing`'s own.
//! - W3C trace context in and out of SQS message attributes ([`inject`], [`continue_from`]).

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub mod metrics;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// JSON unless stdout is a terminal.
    pub fn detect() -> Self {
        match std::io::stdout().is_terminal() {
            true => Self::Text,
            false => Self::Json,
        }
    }
}

/// Where logs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
}

/// What [`init`] installed; flush it with [`Telemetry::shutdown`] before exiting.
#[must_use = "call shutdown() before exit, or buffered spans are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }

    /// Exports what is buffered and stops the exporters.
    pub fn shutdown(self) {
        if let Some(t) = self.tracer {
            let _ = t.force_flush();
            if let Err(e) = t.shutdown() {
                eprintln!("flowmerge: flushing traces failed: {e}");
            }
        }
        if let Some(m) = self.meter {
            let _ = m.force_flush();
            if let Err(e) = m.shutdown() {
                eprintln!("flowmerge: flushing metrics failed: {e}");
            }
        }
    }
}

/// Runs a service's whole life under telemetry: installs it (logs to stdout, `info` unless
/// `FLOWMERGE_LOG` says otherwise), runs `service_main`, logs its error if it fails, and flushes
/// the exporters on the way out — what the worker binaries' `main` does.
pub async fn run_service<T, E: std::fmt::Display>(
    service: &'static str,
    service_main: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let telemetry = init(service, LogFormat::detect(), LogTarget::Stdout, "info");
    let result = service_main.await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "{service} failed");
    }
    // Flushing may block on the exporter's HTTP client: off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

/// Checks `FLOWMERGE_LOG`: a filter that does not parse is an error naming the variable, so a typo
/// is caught at start instead of silently logging at the default level.
pub fn check_log_filter() -> Result<(), String> {
    let Ok(text) = std::env::var("FLOWMERGE_LOG") else {
        return Ok(());
    };
    if text.trim().is_empty() {
        return Ok(());
    }
    EnvFilter::builder()
        .parse(text.trim())
        .map(|_| ())
        .map_err(|e| {
            format!(
                "FLOWMERGE_LOG={text:?} is not a log filter: {e} (examples: info, warn, \
                 info,flowmerge_core=debug)"
            )
        })
}

/// Installs logging and, when an OTLP endpoint is configured, trace and metric export.
/// `service` is the default `service.name` (`OTEL_SERVICE_NAME` overrides it).
/// Must be called inside a tokio runtime (the gRPC exporter runs on it).
pub fn init(
    service: &str,
    format: LogFormat,
    target: LogTarget,
    default_filter: &str,
) -> Telemetry {
    // An unparsable filter was refused by `check_log_filter` at start; empty means the default.
    let filter = std::env::var("FLOWMERGE_LOG")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .and_then(|t| EnvFilter::builder().parse(t.trim()).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let (tracer, meter, otel_error) = match otel_config() {
        None => (None, None, None),
        Some(protocol) => match build_providers(service, protocol) {
            Ok((t, m)) => (Some(t), Some(m), None),
            Err(e) => (None, None, Some(e)),
        },
    };
    // Spans are exported by their own filter (flowmerge's spans at info), whatever the log level.
    let otel_layer = tracer.as_ref().map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer("flowmerge"))
            .with_filter(Targets::new().with_target("flowmerge", tracing::Level::INFO))
    });
    let writer = move || -> Box<dyn std::io::Write> {
        match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
        }
    };
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(
                target == LogTarget::Stdout && std::io::stdout().is_terminal()
                    || target == LogTarget::Stderr && std::io::stderr().is_terminal(),
            )
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    if let Some(e) = otel_error {
        tracing::error!(error = %e, "OpenTelemetry export disabled: bad OTEL_* configuration");
    }
    if let Some(m) = &meter {
        global::set_meter_provider(m.clone());
    }
    if let Some(t) = &tracer {
        global::set_tracer_provider(t.clone());
    }
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    Telemetry { tracer, meter }
}

/// The OTLP protocol to use, or None when export is off (no endpoint, or `OTEL_SDK_DISABLED`).
fn otel_config() -> Option<Result<Protocol, String>> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    Some(match protocol.trim() {
        "http/protobuf" | "" => Ok(Protocol::HttpBinary),
        "grpc" => Ok(Protocol::Grpc),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (use http/protobuf or grpc)"
        )),
    })
}

fn build_providers(
    service: &str,
    protocol: Result<Protocol, String>,
) -> Result<(SdkTracerProvider, SdkMeterProvider), String> {
    let protocol = protocol?;
    let spans = match protocol {
        Protocol::Grpc => SpanExporter::builder().with_tonic().build(),
        _ => SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build(),
    }
    .map_err(|e| format!("span exporter: {e}"))?;
    let metrics = match protocol {
        Protocol::Grpc => MetricExporter::builder().with_tonic().build(),
        _ => MetricExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build(),
    }
    .map_err(|e| format!("metric exporter: {e}"))?;
    let resource = resource(service);
    // The SDK's default configuration reads OTEL_TRACES_SAMPLER / _ARG itself.
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let meter = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(resource)
        .build();
    Ok((tracer, meter))
}

/// Resource from `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, with `service` as the
/// default name.
fn resource(service: &str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let b = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match named {
        true => b.build(),
        false => b.with_service_name(service.to_owned()).build(),
    }
}

/// The W3C trace context (`traceparent`, `tracestate`, `baggage`) of `span`, as message
/// attributes. Empty when nothing is traced.
pub fn inject(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    let mut out: Vec<_> = carrier.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    out.sort();
    out
}

/// Makes `span` continue the trace whose context `attributes` carry (a message's attributes).
pub fn continue_from(span: &tracing::Span, attributes: &HashMap<String, String>) {
    if !attributes.contains_key("traceparent") {
        return;
    }
    let cx = global::get_text_map_propagator(|p| p.extract(attributes));
    let _ = span.set_parent(cx);
}

pub use opentelemetry::trace::SpanContext;

/// The OpenTelemetry identity of `span`, to link to it from another trace (None when not traced).
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    use opentelemetry::trace::TraceContextExt;
    let sc = span.context().span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Links `span` to others (e.g. a batch to the events it gathers).
pub fn add_links(span: &tracing::Span, links: impl IntoIterator<Item = SpanContext>) {
    for l in links {
        span.add_link(l);
    }
}
