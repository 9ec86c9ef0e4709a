//! What the operator's benchmarks measure with: per-thread CPU time from
//! /proc, RSS, and a fake API server on a thread of its own (so its CPU
//! time, the API server's in a real cluster, is counted apart).
#![allow(dead_code, clippy::unwrap_used)]

use kube::Client;
use kubefence_operator::fake::FakeApi;

/// Nanoseconds this thread has run on a CPU.
pub fn cpu_ns() -> u64 {
    thread_cpu_ns("/proc/thread-self/schedstat")
}

/// Nanoseconds the thread of `schedstat` (its /proc file) has run on a CPU.
pub fn thread_cpu_ns(schedstat: &str) -> u64 {
    std::fs::read_to_string(schedstat)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds every thread of this process has run on a CPU (the
/// benchmark's own threads and the fake API server's).
pub fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| thread_cpu_ns(&t.path().join("schedstat").to_string_lossy()))
        .sum()
}

/// A fake API server answering on a thread of its own, and the /proc file
/// of that thread's CPU time.
pub fn fake_on_its_own_thread() -> (Client, FakeApi, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (client, fake) = FakeApi::start();
            // The link reads `<pid>/task/<tid>`, relative to /proc.
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let schedstat = std::path::Path::new("/proc")
                .join(me)
                .join("schedstat")
                .to_string_lossy()
                .to_string();
            tx.send((client, fake, schedstat)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// (VmRSS, VmHWM) in KiB.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
