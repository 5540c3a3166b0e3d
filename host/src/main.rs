//! The `sagahost` binary: the command line over the `sagahost` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
