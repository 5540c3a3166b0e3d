//! Per-partner resource limits and the wasmtime hooks that enforce them.

use std::time::Duration;

use serde::Deserialize;

/// What one call of a partner's component may use.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Wall-clock time for one `handle` call, in milliseconds.
    pub deadline_ms: u64,
    /// Linear memory cap for one instance, in bytes.
    pub memory_bytes: usize,
    /// Optional instruction budget (wasmtime fuel) for one `handle` call.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 1_000,
            memory_bytes: 64 << 20,
            fuel: None,
        }
    }
}

impl Limits {
    /// The deadline as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// Caps linear memory and remembers whether the cap was hit, so that the trap
/// a guest raises after a failed `memory.grow` can be reported as a memory limit
/// rather than as a bare `unreachable`.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub(crate) denied: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        Self { cap, denied: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.cap;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k entries is far beyond any real guest.
        Ok(desired <= 100_000)
    }
}
