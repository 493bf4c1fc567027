//! `fake-cocoon`: the fake hypervisor CLI (and `sudo`, `sshpass`) the real vk-cocoon calls in
//! the conformance tests; see `cocoon_dev::fake_cli`.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(cocoon_dev::fake_cli::main(std::env::args().collect()));
}
