//! The services' metrics, through the global OpenTelemetry meter: no-ops unless [`crate::init`]
//! installed an exporter.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Histogram};

pub struct Metrics {
    /// Raw records read.
    pub records_in: Counter<u64>,
    /// Merged rows written.
    pub records_out: Counter<u64>,
    /// Raw bytes read (as stored, usually gzip).
    pub bytes_in: Counter<u64>,
    /// Parquet bytes written.
    pub bytes_out: Counter<u64>,
    /// Objects quarantined.
    pub quarantined: Counter<u64>,
    /// Objects placed into batches by the mapper.
    pub objects_batched: Counter<u64>,
    /// Seconds from receiving a job to committing its batch.
    pub batch_latency: Histogram<f64>,
    /// Seconds a message waited in its queue before it was received.
    pub queue_wait: Histogram<f64>,
}

/// The instruments (created on first use, after [`crate::init`]).
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let m = global::meter("flowmerge");
        Metrics {
            records_in: m
                .u64_counter("flowmerge.records.in")
                .with_unit("{record}")
                .build(),
            records_out: m
                .u64_counter("flowmerge.records.out")
                .with_unit("{record}")
                .build(),
            bytes_in: m.u64_counter("flowmerge.bytes.in").with_unit("By").build(),
            bytes_out: m.u64_counter("flowmerge.bytes.out").with_unit("By").build(),
            quarantined: m
                .u64_counter("flowmerge.objects.quarantined")
                .with_unit("{object}")
                .build(),
            objects_batched: m
                .u64_counter("flowmerge.objects.batched")
                .with_unit("{object}")
                .build(),
            batch_latency: m
                .f64_histogram("flowmerge.batch.duration")
                .with_unit("s")
                .build(),
            queue_wait: m
                .f64_histogram("flowmerge.queue.wait")
                .with_unit("s")
                .build(),
        }
    })
}

/// Attributes naming a queue, per the messaging semantic conventions.
pub fn queue_attributes(queue: &str) -> [KeyValue; 2] {
    [
        KeyValue::new("messaging.system", "aws_sqs"),
        KeyValue::new("messaging.destination.name", queue.to_owned()),
    ]
}
