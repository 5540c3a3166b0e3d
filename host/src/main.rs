//! The `sagahost` binary; everything lives in the library's [`sagahost::cli`].

fn main() -> std::process::ExitCode {
    sagahost::cli::main()
}
