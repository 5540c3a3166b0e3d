//! Peak memory of decoding every hostile body of `sagahost_dataverse::adversarial`, sized
//! near the default 4 MiB body limit.
//!
//! A global allocator wrapping the system one counts the bytes each thread has allocated and
//! not yet freed, and the most it has held at once, so the figure is exact and does not
//! depend on timing or on the other tests running in parallel. Each body must decode or
//! fail with an error that names its format and the limit it hit, and at no point may the
//! decoder hold more than 16 bytes per body byte plus a small constant.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sagahost_dataverse::adversarial::GENERATORS;
use sagahost_dataverse::{Limits, decode};

/// The system allocator, counting per thread.
struct Counting;

thread_local! {
    /// Bytes this thread has allocated and not freed (it can go below zero when it frees
    /// what another thread allocated).
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    /// The most `CURRENT` has been since the last [`peak_during`] started.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(change: isize) {
    // `try_with` fails only while the thread is being torn down, when nothing is measured.
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + change;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to `System` unchanged; the counting only reads the layout.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            record(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            record(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        record(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            // Large blocks are remapped in place, so only the difference is ever held twice.
            record(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it held at once (its result included).
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, (peak - base) as usize)
}

/// How far below the body limit the bodies are made.
const SIZE: usize = 4 * 1024 * 1024 - 4096;
/// Peak bytes allowed per body byte…
const PER_BODY_BYTE: usize = 16;
/// … plus this: the decoded bytes any body may take whatever its size
/// (`Limits::expansion_allowance`), and 1 MiB.
const CONSTANT: usize = 9 * 1024 * 1024;

/// The format each error must name, by content type.
fn format_name(content_type: &str) -> &'static str {
    match content_type {
        "application/json" => "JSON body",
        "application/xml" => "XML body",
        _ => ".NET binary XML body",
    }
}

#[test]
fn every_hostile_body_decodes_or_fails_within_16_bytes_per_body_byte() {
    let limits = Limits::default();
    for generator in GENERATORS {
        let body = (generator.build)(SIZE);
        let name = generator.name;
        assert!(
            (SIZE - 4096..=limits.max_body_bytes).contains(&body.len()),
            "{name}: {} bytes",
            body.len()
        );
        let (result, peak) = peak_during(|| decode(&body, Some(generator.content_type), &limits).map(drop));
        let bound = PER_BODY_BYTE * body.len() + CONSTANT;
        assert!(peak <= bound, "{name}: peak {peak} bytes, over {bound}");
        if let Err(err) = result {
            let message = err.to_string();
            assert!(
                message.starts_with(format_name(generator.content_type)),
                "{name}: {message}"
            );
            let names_limit = [" limit", "deeper than", "have no dictionary"]
                .iter()
                .any(|limit| message.contains(limit));
            assert!(names_limit, "{name}: {message}");
        }
    }
}

#[test]
fn a_tight_budget_bounds_peak_memory_at_every_size() {
    // With no allowance, whatever decodes has been paid for by the body alone.
    let limits = Limits {
        max_expansion: 12,
        expansion_allowance: 0,
        ..Limits::default()
    };
    for size in [4 * 1024, 64 * 1024, 512 * 1024] {
        for generator in GENERATORS {
            let body = (generator.build)(size);
            let (_, peak) = peak_during(|| decode(&body, Some(generator.content_type), &limits).map(drop));
            let bound = PER_BODY_BYTE * body.len() + 64 * 1024;
            assert!(
                peak <= bound,
                "{} at {size}: peak {peak} bytes, over {bound}",
                generator.name
            );
        }
    }
}
