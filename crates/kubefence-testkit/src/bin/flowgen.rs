//! `flowgen N [SEED]`: N synthetic `hubble observe -o jsonpb` lines on
//! stdout (see `kubefence_testkit::flowgen`), for the learn benchmarks.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), seed) = (
        args.first().and_then(|s| s.parse::<usize>().ok()),
        args.get(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(1),
    ) else {
        eprintln!("usage: flowgen N [SEED]  (N jsonpb flow lines on stdout)");
        return ExitCode::from(2);
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let written =
        kubefence_testkit::flowgen::write_jsonpb(&mut out, n, seed).and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowgen: {e}");
            ExitCode::FAILURE
        }
    }
}
