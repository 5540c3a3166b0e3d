//! Criterion micro benchmarks: the two hot calls of every message, measured with criterion's
//! statistics (outlier detection, confidence intervals, comparison with the previous run).
//!
//! - `component-call/{wasm,native}`: one `handle` of the forwarder component, a fresh instance
//!   from the pool each call, against the same logic as a native Rust function.
//! - `decode/{json,xml,binary}`: decoding the sample context of each format, with throughput.
//! - `decode/<format>/<attack>`: decoding (or refusing) each hostile body of
//!   `sagahost_dataverse::adversarial`, [`ADVERSARIAL_BYTES`] long, with throughput: each
//!   must take at most 50 ms per MiB.
//!
//! Run with `scripts/bench micro` (which builds the guest components first). The end-to-end
//! figures and the baselines from other programs are in `suite.rs`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sagahost::component::wit;

mod common;
use common::{DECODE_SAMPLES, contact_body, forwarder, message_event, native_forward, sample};
use sagahost_dataverse::adversarial::GENERATORS;

/// The size of the hostile bodies the `decode` group times: 1 MiB, a quarter of the default
/// body limit, so the group stays short (the memory test decodes them at 4 MiB).
const ADVERSARIAL_BYTES: usize = 1024 * 1024;

fn component_call(c: &mut Criterion) {
    let (_runtime, component) = forwarder();
    let event = message_event(contact_body(5));
    let runtime = common::call_runtime();
    let mut group = c.benchmark_group("component-call");
    group.bench_function("wasm", |b| {
        b.iter(|| {
            let plan = runtime.block_on(component.handle("m-1", &event));
            assert!(matches!(plan, Ok(wit::Plan::Done(_))));
        });
    });
    group.bench_function("native", |b| {
        b.iter(|| native_forward(std::hint::black_box(&event)));
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let limits = Default::default();
    let mut group = c.benchmark_group("decode");
    for (format, file, content_type) in DECODE_SAMPLES {
        let body = sample(file);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format, |b| {
            b.iter(|| sagahost_dataverse::decode(&body, Some(content_type), &limits).unwrap());
        });
    }
    for generator in GENERATORS {
        let body = (generator.build)(ADVERSARIAL_BYTES);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(generator.name, |b| {
            b.iter(|| sagahost_dataverse::decode(&body, Some(generator.content_type), &limits).is_ok());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Shorter than criterion's defaults (3 s + 5 s per function) so that `scripts/bench` as a
    // whole stays within 15 minutes; the intervals stay narrow for calls this short.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = component_call, decode
}
criterion_main!(benches);
