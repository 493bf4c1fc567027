//! The DHCP leases of the fake hypervisor's VMs, in the file and format the provider reads:
//! dnsmasq's lines (vk-cocoon v0.1.1 reads `/var/lib/misc/dnsmasq.leases`) or cocoon-net's JSON
//! array (v0.2.9, `VK_LEASES_PATH`). The file is rewritten whole from the state, atomically.

use std::path::Path;

use super::faults::Faults;
use super::state::State;

/// The format of the lease file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseFormat {
    /// `<expiry-epoch> <mac> <ip> <hostname> *` per line.
    Dnsmasq,
    /// `[{"mac": …, "ip": …, "expiry": RFC 3339}]`.
    Json,
}

impl LeaseFormat {
    /// From `COCOON_FAKE_LEASE_FORMAT` (`dnsmasq`, the default, or `json`).
    pub fn from_env(value: Option<&str>) -> Self {
        match value {
            Some("json") => Self::Json,
            _ => Self::Dnsmasq,
        }
    }

    /// Its name in `COCOON_FAKE_LEASE_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dnsmasq => "dnsmasq",
            Self::Json => "json",
        }
    }
}

/// The lease file's content for `state`: a lease for every VM that exists and is not withheld.
pub fn render(state: &State, faults: &Faults, format: LeaseFormat, now_epoch: i64) -> String {
    let leased = state.vms.values().filter(|vm| !faults.withholds_lease(&vm.name));
    match format {
        LeaseFormat::Dnsmasq => leased
            .map(|vm| format!("{} {} {} {} *\n", now_epoch + 3600, vm.mac, vm.ip, vm.name))
            .collect(),
        LeaseFormat::Json => {
            let rows: Vec<serde_json::Value> = leased
                .map(|vm| serde_json::json!({"mac": vm.mac, "ip": vm.ip, "expiry": "2099-01-01T00:00:00Z"}))
                .collect();
            serde_json::Value::Array(rows).to_string()
        }
    }
}

/// Writes `content` to `path` through a temporary file beside it (a reader sees the old or the
/// new file, and its mtime changes).
pub fn write(path: &Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("fake-cocoon.tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_cli::faults::Faults;
    use crate::fake_cli::state::Vm;

    fn vm(name: &str, ip: &str, mac: &str) -> Vm {
        Vm {
            id: name.into(),
            name: name.into(),
            state: "running".into(),
            cpu: 1,
            memory: "1G".into(),
            storage: "1G".into(),
            ip: ip.into(),
            mac: mac.into(),
            source: "img".into(),
            how: "clone".into(),
            created: String::new(),
        }
    }

    #[test]
    fn every_vm_gets_a_fresh_lease_in_the_providers_format_unless_withheld() {
        let mut state = State::default();
        for (name, ip, mac) in [
            ("vk-a-0", "10.88.100.2", "52:54:00:00:00:01"),
            ("vk-a-1", "10.88.100.3", "52:54:00:00:00:02"),
        ] {
            state.vms.insert(name.into(), vm(name, ip, mac));
        }
        let faults = Faults { no_lease: vec!["*-1".into()], ..Default::default() };
        let lines = render(&state, &faults, LeaseFormat::Dnsmasq, 1_000);
        assert_eq!(lines, "4600 52:54:00:00:00:01 10.88.100.2 vk-a-0 *\n");
        let json: serde_json::Value =
            serde_json::from_str(&render(&state, &Faults::default(), LeaseFormat::Json, 0))
                .unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        assert_eq!(json[1]["mac"], "52:54:00:00:00:02");
    }
}
