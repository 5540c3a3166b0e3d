//! The host side of the `partner` world: what a guest's imports do, and the
//! per-call store state that backs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use super::wit::sagahost::partner::{config, log};

/// Bytes of stdout/stderr a guest may write per call; past it writes fail.
pub(crate) const STDIO_CAPACITY: usize = 64 << 10;
/// Bytes of one `log.write` line kept; the rest is cut.
const MAX_LOG_LINE: usize = 8 << 10;
/// `log.write` lines kept per call; the rest are counted, not written.
const MAX_LOG_LINES: u32 = 1_000;

/// State of one store, i.e. of one `handle` call.
pub(crate) struct GuestState {
    pub(crate) partner: Arc<str>,
    pub(crate) message_id: Arc<str>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    log_lines: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl GuestState {
    pub(crate) fn new(
        partner: Arc<str>,
        message_id: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        memory_cap: usize,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        // No preopens, no environment, no arguments, no sockets, no name lookup:
        // the guest reaches the world only through the host's imports.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            partner,
            message_id,
            config,
            limiter: MemoryLimiter::new(memory_cap),
            stdout,
            stderr,
            log_lines: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Sends what the guest wrote to stdout/stderr to `tracing`, line by line, under the
    /// same bounds as `log.write`: each line cut to [`MAX_LOG_LINE`] bytes, and at most
    /// [`MAX_LOG_LINES`] lines per stream.
    pub(crate) fn flush_stdio(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            for line in lines.by_ref().take(MAX_LOG_LINES as usize) {
                let line = truncate(line, MAX_LOG_LINE);
                tracing::info!(
                    target: "sagahost::guest",
                    partner = %self.partner,
                    message_id = %self.message_id,
                    stream,
                    "{line}"
                );
            }
            let dropped = lines.count();
            if dropped > 0 {
                tracing::warn!(
                    target: "sagahost::guest",
                    partner = %self.partner,
                    message_id = %self.message_id,
                    stream,
                    "{dropped} more lines dropped: the limit is {MAX_LOG_LINES} per call"
                );
            }
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for GuestState {
    fn write(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(
                    target: "sagahost::guest",
                    partner = %self.partner,
                    message_id = %self.message_id,
                    "log line limit of {MAX_LOG_LINES} per call reached; dropping the rest"
                );
            }
            return;
        }
        let text = truncate(&message, MAX_LOG_LINE);
        let (partner, message_id) = (&*self.partner, &*self.message_id);
        match level {
            log::Level::Trace => tracing::trace!(target: "sagahost::guest", partner, message_id, "{text}"),
            log::Level::Debug => tracing::debug!(target: "sagahost::guest", partner, message_id, "{text}"),
            log::Level::Info => tracing::info!(target: "sagahost::guest", partner, message_id, "{text}"),
            log::Level::Warn => tracing::warn!(target: "sagahost::guest", partner, message_id, "{text}"),
            log::Level::Error => tracing::error!(target: "sagahost::guest", partner, message_id, "{text}"),
        }
    }
}

impl config::Host for GuestState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl super::wit::sagahost::partner::types::Host for GuestState {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use wasmtime_wasi::p2::{OutputStream, Pollable};

    use super::*;
    use crate::telemetry::capture::CapturedLogs;

    #[tokio::test]
    async fn guest_stdio_lines_are_capped_in_length_and_count() {
        let state = GuestState::new("p".into(), "m".into(), Arc::default(), 1 << 20);
        let mut stdout = state.stdout.clone();
        let mut written = "x".repeat(3 * MAX_LOG_LINE);
        written.push('\n');
        for i in 0..MAX_LOG_LINES + 5 {
            written.push_str(&format!("line {i}\n"));
        }
        let written = Bytes::from(written);
        for chunk in written.chunks(4096) {
            stdout.ready().await;
            stdout.write(Bytes::copy_from_slice(chunk)).unwrap();
        }
        let (captured, guard) = CapturedLogs::install();
        state.flush_stdio();
        drop(guard);
        let text = captured.text();
        let longest = text.lines().map(str::len).max().unwrap();
        assert!(longest < MAX_LOG_LINE + 200, "a line of {longest} bytes was logged");
        assert!(text.contains(&"x".repeat(MAX_LOG_LINE)));
        assert_eq!(
            text.lines().filter(|l| l.contains("line ")).count(),
            MAX_LOG_LINES as usize - 1
        );
        assert!(text.contains("6 more lines dropped"), "{text}");
    }
}
