//! Where connections come from.
//!
//! - [`Mode::Ebpf`]: the agent's own eBPF programs (Linux ≥ 5.8): every
//!   new TCP and UDP connection of every socket on the node, from the
//!   moment the agent starts, on any CNI.
//! - [`Mode::Conntrack`]: the kernel's connection tracking events, where
//!   BPF cannot load (no BTF, no rights); sees routed pod traffic on
//!   iptables-based CNIs.
//! - [`Mode::Hubble`]: flows from Hubble Relay's gRPC API (Cilium clusters),
//!   attributed by Cilium itself.
//!
//! The mode is reported in the logs, the metrics and each neighborhood's
//! `kubefence.dev/agent-mode` annotation.

#[cfg(target_os = "linux")]
pub mod conntrack;
#[cfg(target_os = "linux")]
pub mod ebpf;
pub mod hubble;

/// How the agent captures connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ebpf,
    Conntrack,
    Hubble,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Conntrack => "conntrack",
            Self::Hubble => "hubble",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
