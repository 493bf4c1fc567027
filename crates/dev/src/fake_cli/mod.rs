//! A fake of the `cocoon` hypervisor CLI that vk-cocoon shells out to, so that the real
//! provider runs here with no VM: one multi-call binary (`fake-cocoon`), installed by a harness
//! under the names the provider calls — `cocoon` (the CLI), `sudo` (vk-cocoon runs every CLI
//! call through it; the fake hands those to the CLI and does nothing else: it never edits
//! `/etc/hosts`, never reaches a hypervisor socket) and `sshpass` (the provider's SSH into a
//! guest fails at once, without a connection). Guest addresses are strings nothing dials.
//!
//! State lives in the directory `COCOON_FAKE_STATE` names ([`state`]); every call is logged
//! there ([`log`]); faults are planned there ([`faults`]); the DHCP leases are written where
//! `COCOON_FAKE_LEASES` says, in the provider's format ([`leases`]).

pub mod cocoon;
pub mod faults;
pub mod leases;
pub mod log;
pub mod state;
pub mod stream;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;

use cocoon::Output;
use faults::Faults;
use leases::LeaseFormat;
use state::StateDir;

/// Environment variable naming the state directory.
pub const STATE_ENV: &str = "COCOON_FAKE_STATE";
/// Environment variable naming the lease file to keep (none: no lease file).
pub const LEASES_ENV: &str = "COCOON_FAKE_LEASES";
/// Environment variable naming the lease format (`dnsmasq` or `json`).
pub const LEASE_FORMAT_ENV: &str = "COCOON_FAKE_LEASE_FORMAT";

/// Runs the multi-call binary: `argv[0]`'s file name says which program it is.
pub fn main(argv: Vec<String>) -> i32 {
    let Some(dir) = std::env::var_os(STATE_ENV).map(PathBuf::from) else {
        eprintln!("fake-cocoon: {STATE_ENV} must name the state directory");
        return 2;
    };
    let dir = StateDir(dir);
    let program = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args = argv.get(1..).unwrap_or_default().to_vec();
    match program.as_str() {
        "sudo" => sudo(&dir, args),
        "sshpass" => logged(&dir, "sshpass", &args, || Output { code: 255, ..Default::default() }),
        _ => cocoon(&dir, &args),
    }
}

/// `sudo [env K=V ...] PROGRAM ARGS`: the CLI is run; of anything else only `test` answers
/// (no, there is no such socket), the rest (`bash -c … /etc/hosts`, `sed`, `chmod`, `curl`) is
/// logged and not run.
fn sudo(dir: &StateDir, args: Vec<String>) -> i32 {
    let mut rest = args.as_slice();
    if rest.first().map(String::as_str) == Some("env") {
        rest = &rest[1..];
        while rest.first().is_some_and(|a| a.contains('=') && !a.starts_with('-')) {
            rest = &rest[1..];
        }
    }
    let Some(program) = rest.first() else { return 1 };
    let cli = ["COCOON_BIN", "VK_COCOON_BIN"]
        .iter()
        .filter_map(std::env::var_os)
        .any(|bin| bin == program.as_str());
    if cli || program.ends_with("/cocoon") || program == "cocoon" {
        return cocoon(dir, &rest[1..]);
    }
    let code = match program.rsplit('/').next().unwrap_or_default() {
        "bash" | "sed" | "chmod" => 0,
        _ => 1,
    };
    logged(dir, "sudo", rest, || Output { code, ..Default::default() })
}

/// One `cocoon` call: its planned delay, its planned failure, or the command on the state (and
/// the lease file rewritten from it). The calls that stream go to [`stream`].
fn cocoon(dir: &StateDir, args: &[String]) -> i32 {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["vm", "status", rest @ ..] if rest.contains(&"--event") => {
            let _ = log::append(
                &dir.0,
                &log::Call {
                    at: Timestamp::now().to_string(),
                    program: "cocoon".into(),
                    argv: args.to_vec(),
                    exit: 0,
                    millis: 0,
                },
            );
            return stream::watch(dir, &mut std::io::stdout());
        }
        ["snapshot", "export", name, ..] => {
            let name = name.to_string();
            return logged(dir, "cocoon", args, || {
                stream::export(dir, &name, &mut std::io::stdout())
            });
        }
        ["snapshot", "import", ..] => {
            let name = args
                .iter()
                .position(|a| a == "--name")
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default();
            let now = Timestamp::now().to_string();
            return logged(dir, "cocoon", args, || {
                stream::import(dir, &name, &mut std::io::stdin(), &now)
            });
        }
        _ => {}
    }
    let joined = args.join(" ");
    let faults = Faults::load(&dir.0);
    std::thread::sleep(faults.delay(&joined));
    logged(dir, "cocoon", args, || {
        if let Some(failure) = faults.failure(&joined) {
            return Output {
                stderr: format!("{}\n", failure.message),
                code: failure.code,
                ..Default::default()
            };
        }
        let now = Timestamp::now();
        let leases = std::env::var_os(LEASES_ENV).map(PathBuf::from);
        let format = LeaseFormat::from_env(std::env::var(LEASE_FORMAT_ENV).ok().as_deref());
        let outcome = dir.with(|state| {
            let out = cocoon::run(state, args, &now.to_string());
            let lease_text = leases::render(state, &faults, format, now.as_second());
            (out, lease_text)
        });
        match outcome {
            Ok((out, lease_text)) => {
                if let Some(path) = &leases
                    && let Err(e) = leases::write(path, &lease_text)
                {
                    return Output {
                        stderr: format!("fake-cocoon: write leases {}: {e}\n", path.display()),
                        code: 2,
                        ..Default::default()
                    };
                }
                out
            }
            Err(e) => Output {
                stderr: format!("fake-cocoon: state {}: {e}\n", dir.0.display()),
                code: 2,
                ..Default::default()
            },
        }
    })
}

/// Runs `call`, prints its output, logs it; returns its exit code.
fn logged(dir: &StateDir, program: &str, args: &[String], call: impl FnOnce() -> Output) -> i32 {
    let started = Instant::now();
    let at = Timestamp::now().to_string();
    let out = call();
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    let entry = log::Call {
        at,
        program: program.into(),
        argv: args.to_vec(),
        exit: out.code,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let _ = log::append(&dir.0, &entry);
    out.code
}
