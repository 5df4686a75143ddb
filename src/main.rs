//! `berth` command line: parse flags, start logging, run the verb.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let args = berth::cli::Args::parse();
    berth::telemetry::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(berth::cli::run(args))
}
