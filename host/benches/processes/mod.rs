//! The child processes of the multi-process scenarios: `sagahost broker` and `sagahost run`
//! (the binary this bench was built with), each killed when dropped so that a failed run
//! leaves nothing behind.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sagahost ARGS`, logging errors only.
pub fn sagahost(args: &[&str]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_sagahost"))
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting sagahost"),
    )
}

/// Starts `sagahost broker` on the queue database in `dir` and waits until it listens
/// (`sagahost run` gives up when the broker does not answer at start); the process and its port.
pub fn broker(dir: &Path) -> (Process, u16) {
    let port = free_port();
    let process = sagahost(&[
        "broker",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data",
        dir.to_str().unwrap(),
    ]);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the broker never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (process, port)
}

/// The connection string of the broker on `port` (its development key).
pub fn connection_string(port: u16) -> String {
    format!(
        "Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;\
         SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
}
