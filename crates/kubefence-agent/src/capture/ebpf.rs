//! eBPF capture: loads `bpf/connections.bpf.c` (compiled by `build.rs`),
//! attaches it, and reads its ring buffer.
//!
//! Before loading, the host is checked for what the program needs, so a
//! missing feature is named instead of surfacing as a verifier or syscall
//! error: a kernel ≥ 5.8 (ring buffer), tracefs (the tracepoint's id), a
//! cgroup v2 hierarchy (the UDP programs), and the rights (CAP_BPF and
//! CAP_PERFMON, or CAP_SYS_ADMIN; CAP_NET_ADMIN for cgroup_skb).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, TracePoint};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::connection::{Connection, decode_event};

/// The program, compiled from source at build time (empty when clang was
/// missing then).
static PROGRAM: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connections.bpf.o"));

/// Where tracefs may be mounted (aya looks in both).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What the capture needs from the host.
#[derive(Clone, Debug)]
pub struct EbpfOptions {
    /// The cgroup v2 directory whose sockets are observed for UDP: the root
    /// of the hierarchy sees every pod (`/sys/fs/cgroup`, or
    /// `/sys/fs/cgroup/unified` on a hybrid host).
    pub cgroup: PathBuf,
    /// Copy DNS answers (UDP from port 53) to name external addresses.
    pub dns: bool,
}

impl Default for EbpfOptions {
    fn default() -> Self {
        Self {
            cgroup: default_cgroup(),
            dns: false,
        }
    }
}

/// Where DNS answers go (see [`EbpfCapture::on_dns`]).
pub type DnsSink = Box<dyn FnMut(&[u8]) + Send>;

/// The cgroup v2 root of this host: `/sys/fs/cgroup` when it is cgroup v2,
/// else the hybrid layout's `/sys/fs/cgroup/unified`.
pub fn default_cgroup() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && unified.join("cgroup.controllers").exists()
    {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// Why the eBPF capture cannot run, said so that the fix is clear.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "this kubefence was built without its eBPF program (clang was not found when it was \
         compiled): install clang and the libbpf headers (scripts/install-bpf-toolchain.sh) and \
         rebuild"
    )]
    NotBuilt,
    #[error("kernel {0} is older than 5.8: the eBPF capture needs the BPF ring buffer (5.8)")]
    KernelTooOld(String),
    #[error(
        "tracefs is not mounted (looked in {}): mount it (mount -t tracefs nodev \
         /sys/kernel/tracing) or mount the host's /sys/kernel/tracing into the agent",
        TRACEFS.join(", ")
    )]
    NoTracefs,
    #[error(
        "{0} is not a cgroup v2 directory: the UDP capture attaches to the cgroup v2 root \
         (--cgroup)"
    )]
    NoCgroup2(PathBuf),
    #[error(
        "no rights to {what}: the eBPF capture needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or \
         CAP_SYS_ADMIN); {detail}"
    )]
    NoRights { what: &'static str, detail: String },
    #[error("cannot {what}: {detail}")]
    Failed { what: &'static str, detail: String },
}

/// Counters of the capture, shared with the metrics and logs.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Records read from the ring buffer.
    pub events: AtomicU64,
    /// Records that were not a connection (counted, skipped).
    pub malformed: AtomicU64,
    /// Events the kernel could not queue (ring buffer full), as last read.
    pub lost: AtomicU64,
}

/// The loaded and attached programs. Dropping it detaches them.
pub struct EbpfCapture {
    // Kept for the programs' lifetime: dropping it detaches and unloads.
    _bpf: Ebpf,
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    /// DNS answers, when asked for, and who reads them.
    dns: Option<(RingBuf<MapData>, DnsSink)>,
    dns_ring: Option<RingBuf<MapData>>,
}

impl std::fmt::Debug for EbpfCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfCapture").finish_non_exhaustive()
    }
}

type DnsFd = AsyncFd<RingBuf<MapData>>;

/// The DNS ring buffer when it has records; never, without one.
async fn dns_readable(
    dns: &mut Option<(DnsFd, DnsSink)>,
) -> io::Result<(
    tokio::io::unix::AsyncFdReadyMutGuard<'_, RingBuf<MapData>>,
    &mut DnsSink,
)> {
    match dns {
        Some((fd, sink)) => Ok((fd.readable_mut().await?, sink)),
        None => std::future::pending().await,
    }
}

/// The payload of a `struct dns_answer` (bpf/connections.bpf.c: a length,
/// 6 bytes of padding, 512 bytes of data).
fn dns_payload(record: &[u8]) -> Option<&[u8]> {
    let length = usize::from(u16::from_le_bytes([*record.first()?, *record.get(1)?]));
    record.get(8..8 + length)
}

/// The error chain's first `io::Error`, if any.
fn io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = err.source();
    }
    None
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        // aya's messages often repeat their source's: say each once.
        let more = err.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        current = err.source();
    }
    text
}

fn failure(what: &'static str, e: &(dyn std::error::Error + 'static)) -> EbpfError {
    let detail = chain(e);
    match io_error(e).map(io::Error::kind) {
        Some(io::ErrorKind::PermissionDenied) => EbpfError::NoRights { what, detail },
        _ => EbpfError::Failed { what, detail },
    }
}

/// `major.minor` of the running kernel.
fn kernel_version() -> Option<(u32, u32, String)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let release = release.trim().to_string();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, release))
}

/// Checks the host for what the capture needs, without loading anything.
pub fn preflight(options: &EbpfOptions) -> Result<(), EbpfError> {
    if PROGRAM.is_empty() {
        return Err(EbpfError::NotBuilt);
    }
    if let Some((major, minor, release)) = kernel_version()
        && (major, minor) < (5, 8)
    {
        return Err(EbpfError::KernelTooOld(release));
    }
    if !TRACEFS.iter().any(|p| {
        Path::new(p)
            .join("events/sock/inet_sock_set_state")
            .exists()
    }) {
        return Err(EbpfError::NoTracefs);
    }
    if !options.cgroup.join("cgroup.controllers").exists() {
        return Err(EbpfError::NoCgroup2(options.cgroup.clone()));
    }
    Ok(())
}

impl EbpfCapture {
    /// Checks the host, loads the programs and attaches them.
    pub fn start(options: &EbpfOptions) -> Result<Self, EbpfError> {
        preflight(options)?;
        let capture_dns = u8::from(options.dns);
        let mut bpf = EbpfLoader::new()
            .override_global("CAPTURE_DNS", &capture_dns, true)
            .load(PROGRAM)
            .map_err(|e| failure("load the eBPF maps", &e))?;
        let tcp: &mut TracePoint = bpf
            .program_mut("tcp_state")
            .ok_or(EbpfError::Failed {
                what: "find the TCP program",
                detail: "tcp_state missing from the object".into(),
            })?
            .try_into()
            .map_err(|e| failure("read the TCP program", &e))?;
        tcp.load()
            .map_err(|e| failure("load the TCP program", &e))?;
        tcp.attach("sock", "inet_sock_set_state")
            .map_err(|e| failure("attach to sock:inet_sock_set_state", &e))?;
        let cgroup = File::open(&options.cgroup).map_err(|e| failure("open the cgroup", &e))?;
        for (name, attach) in [
            ("udp_egress", CgroupSkbAttachType::Egress),
            ("udp_ingress", CgroupSkbAttachType::Ingress),
        ] {
            let program: &mut CgroupSkb = bpf
                .program_mut(name)
                .ok_or(EbpfError::Failed {
                    what: "find the UDP programs",
                    detail: format!("{name} missing from the object"),
                })?
                .try_into()
                .map_err(|e| failure("read the UDP programs", &e))?;
            program
                .load()
                .map_err(|e| failure("load the UDP programs", &e))?;
            // On kernels ≥ 5.7 (ours are ≥ 5.8) aya attaches with a BPF
            // link, which the kernel always runs alongside the cgroup's
            // other programs (a CNI's): a link takes no attach flags, so
            // the mode must be the flag-less one (AllowMultiple is EINVAL).
            program
                .attach(&cgroup, attach, CgroupAttachMode::Single)
                .map_err(|e| failure("attach the UDP programs to the cgroup", &e))?;
        }
        let ring = bpf.take_map("EVENTS").ok_or(EbpfError::Failed {
            what: "find the ring buffer",
            detail: "EVENTS missing".into(),
        })?;
        let ring = RingBuf::try_from(ring).map_err(|e| failure("map the ring buffer", &e))?;
        let lost = bpf.take_map("LOST").ok_or(EbpfError::Failed {
            what: "find the loss counter",
            detail: "LOST missing".into(),
        })?;
        let lost = PerCpuArray::try_from(lost).map_err(|e| failure("map the loss counter", &e))?;
        let dns_ring = if options.dns {
            let map = bpf.take_map("DNS_ANSWERS").ok_or(EbpfError::Failed {
                what: "find the DNS ring buffer",
                detail: "DNS_ANSWERS missing".into(),
            })?;
            Some(RingBuf::try_from(map).map_err(|e| failure("map the DNS ring buffer", &e))?)
        } else {
            None
        };
        Ok(Self {
            _bpf: bpf,
            ring,
            lost,
            dns: None,
            dns_ring,
        })
    }

    /// Hands each DNS answer's payload to `sink` (with `EbpfOptions::dns`;
    /// without it nothing is copied and `sink` is never called).
    pub fn on_dns(&mut self, sink: impl FnMut(&[u8]) + Send + 'static) {
        if let Some(ring) = self.dns_ring.take() {
            self.dns = Some((ring, Box::new(sink)));
        }
    }

    /// Events the kernel dropped because the ring buffer was full.
    pub fn lost(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Reads connections until `shutdown` turns true, handing each to
    /// `sink`. A malformed record is counted and skipped.
    pub async fn run(
        self,
        stats: Arc<CaptureStats>,
        mut shutdown: watch::Receiver<bool>,
        mut sink: impl FnMut(Connection),
    ) -> io::Result<()> {
        let Self {
            _bpf,
            ring,
            lost,
            dns,
            dns_ring: _,
        } = self;
        let lost_total = |lost: &PerCpuArray<MapData, u64>| {
            lost.get(&0, 0)
                .map(|per_cpu| per_cpu.iter().sum::<u64>())
                .unwrap_or(0)
        };
        // The safe constructor (deprecated since tokio's I/O-safety rework:
        // its unsound case is an fd closed while registered). Here the
        // AsyncFd owns the RingBuf that owns the fd, so the fd outlives the
        // registration; the unsafe replacement is not allowed in this
        // workspace.
        #[allow(deprecated)]
        let mut fd = AsyncFd::with_interest(ring, tokio::io::Interest::READABLE)?;
        let mut dns = match dns {
            #[allow(deprecated)]
            Some((ring, sink)) => Some((
                AsyncFd::with_interest(ring, tokio::io::Interest::READABLE)?,
                sink,
            )),
            None => None,
        };
        loop {
            tokio::select! {
                guard = dns_readable(&mut dns) => {
                    let (mut guard, sink) = guard?;
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        match dns_payload(&item) {
                            Some(payload) => sink(payload),
                            None => {
                                stats.malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    guard.clear_ready();
                }
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        stats.events.fetch_add(1, Ordering::Relaxed);
                        match decode_event(&item) {
                            Ok(c) => sink(c),
                            Err(e) => {
                                stats.malformed.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(error = %e, "skipped a malformed event");
                            }
                        }
                    }
                    guard.clear_ready();
                    stats.lost.store(lost_total(&lost), Ordering::Relaxed);
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        // Whatever arrived before the stop is still counted.
        let ring = fd.get_mut();
        while let Some(item) = ring.next() {
            stats.events.fetch_add(1, Ordering::Relaxed);
            match decode_event(&item) {
                Ok(c) => sink(c),
                Err(_) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        stats.lost.store(lost_total(&lost), Ordering::Relaxed);
        Ok(())
    }
}
