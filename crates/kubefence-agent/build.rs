//! Compiles the agent's eBPF program (`bpf/connections.bpf.c`) with clang
//! into `$OUT_DIR/connections.bpf.o`, which the crate embeds. No object is
//! committed: the program is always built from its source.
//!
//! clang is `$KUBEFENCE_BPF_CLANG`, else `clang` on the PATH
//! (`scripts/install-bpf-toolchain.sh` installs Debian's, with the libbpf
//! headers). Without clang the build still succeeds, with a warning, and
//! embeds an empty object: the agent then says at start that this build
//! cannot capture with eBPF and why, instead of the whole workspace failing
//! to build on a machine without a BPF toolchain. Set
//! `KUBEFENCE_REQUIRE_BPF=1` (CI does) to make a missing clang an error.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "bpf/connections.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=KUBEFENCE_BPF_CLANG");
    println!("cargo:rerun-if-env-changed=KUBEFENCE_REQUIRE_BPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let object = out_dir.join("connections.bpf.o");
    let clang = env::var("KUBEFENCE_BPF_CLANG").unwrap_or_else(|_| "clang".to_string());
    let required = env::var("KUBEFENCE_REQUIRE_BPF").is_ok_and(|v| v == "1");
    // The kernel UAPI headers include <asm/types.h>, which Debian keeps
    // under the multiarch directory of the build machine.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok("x86_64") | Err(_) => "x86_64-linux-gnu",
        Ok(other) => {
            println!("cargo:warning=no eBPF program for target arch {other}");
            write_empty(&object);
            return;
        }
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail_or_warn(
            required,
            &object,
            &format!("{clang} failed on {SOURCE} ({s})"),
        ),
        Err(e) => fail_or_warn(
            required,
            &object,
            &format!(
                "cannot run {clang} ({e}): the agent is built without its eBPF program; \
                 run scripts/install-bpf-toolchain.sh and rebuild"
            ),
        ),
    }
}

fn fail_or_warn(required: bool, object: &std::path::Path, message: &str) {
    if required {
        eprintln!("error: {message} (KUBEFENCE_REQUIRE_BPF=1)");
        std::process::exit(1);
    }
    println!("cargo:warning={message}");
    write_empty(object);
}

fn write_empty(object: &std::path::Path) {
    if let Err(e) = std::fs::write(object, []) {
        eprintln!("error: cannot write {}: {e}", object.display());
        std::process::exit(1);
    }
}
