//! The operator's OCI image, written without a container engine: one uncompressed layer holding
//! the static binary, `/etc/passwd` and `/etc/group` naming the non-root user 65532, and an empty
//! `/tmp`; no shell, no libc. Written as an OCI image layout (`oci/`: push it with
//! `crane push`, `skopeo copy oci:...` or `oras`) and the same layout as a tarball
//! (`<name>-<tag>.oci.tar`, an `oci-archive`). Byte-for-byte reproducible: every timestamp is the
//! Unix epoch, files are sorted, and owners are numeric.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::json;

/// The image's user and group (the `nonroot` of distroless images).
pub const IMAGE_UID: u32 = 65532;
/// Where the binary lives inside the image.
pub const BINARY_PATH: &str = "usr/local/bin/cocoon-operator";

/// Arguments of `cocoon-dev image`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageArgs {
    /// The operator binary; it must be statically linked (the image has no libc).
    #[arg(long, env = "COCOON_IMAGE_BINARY")]
    pub binary: PathBuf,
    /// The image reference recorded in the layout, `name:tag`.
    #[arg(long, env = "COCOON_IMAGE_TAG", default_value = concat!("cocoon-operator:", env!("CARGO_PKG_VERSION")))]
    pub tag: String,
    /// The git commit, recorded as the `org.opencontainers.image.revision` label.
    #[arg(long, env = "COCOON_GIT_COMMIT", default_value = "unknown")]
    pub commit: String,
    /// Output directory (receives `oci/` and the `.oci.tar`).
    #[arg(long, env = "COCOON_IMAGE_OUT", default_value = "target/image")]
    pub out: PathBuf,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The OCI image layout directory.
    pub layout: PathBuf,
    /// The same layout as a tarball.
    pub archive: PathBuf,
    /// `sha256:...` of the manifest: the image's digest once pushed.
    pub manifest_digest: String,
    /// The image reference it was written for.
    pub reference: String,
}

impl fmt::Display for BuiltImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "image {} ({})", self.reference, self.manifest_digest)?;
        writeln!(f, "  layout  {}", self.layout.display())?;
        write!(f, "  archive {}", self.archive.display())
    }
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The binary could not be read.
    #[error("cannot read the binary {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The binary is not a statically linked ELF executable.
    #[error("{path} cannot run in an image without libc: {reason} (build it with `make image`)")]
    NotStatic { path: PathBuf, reason: NotStatic },
    /// The reference is not `name:tag`.
    #[error("image reference {0:?} is not name:tag")]
    Reference(String),
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Why a file cannot be the image's binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotStatic {
    /// Not an ELF file at all.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF file of another class or byte order.
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64,
    /// The program headers run past the end of the file.
    #[error("truncated program headers")]
    Truncated,
    /// It names an ELF interpreter: it needs the dynamic loader and libc.
    #[error("it is dynamically linked (it names an ELF interpreter)")]
    Dynamic,
}

/// Checks that `elf` is an ELF executable without an interpreter (`PT_INTERP`): a dynamically
/// linked binary would not start in an image that has no `/lib`.
pub fn check_static(elf: &[u8]) -> Result<(), NotStatic> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(NotStatic::NotElf);
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err(NotStatic::NotElf64);
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&elf[at..at + 8]);
        u64::from_le_bytes(bytes) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(header) = elf.get(at..at + 4) else {
            return Err(NotStatic::Truncated);
        };
        if u32::from_le_bytes([header[0], header[1], header[2], header[3]]) == 3 {
            return Err(NotStatic::Dynamic);
        }
    }
    Ok(())
}

/// One entry of the layer.
struct Entry {
    path: String,
    mode: u32,
    uid: u32,
    body: Option<Vec<u8>>,
}

/// A ustar archive of `entries` (directories have no body), ending with two zero blocks.
fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = [0u8; 512];
        let name =
            if entry.body.is_none() { format!("{}/", entry.path) } else { entry.path.clone() };
        assert!(name.len() < 100, "tar names are short here: {name}");
        header[..name.len()].copy_from_slice(name.as_bytes());
        let size = entry.body.as_ref().map_or(0, Vec::len);
        let octal = |header: &mut [u8; 512], at: usize, width: usize, value: u64| {
            let text = format!("{value:0w$o}\0", w = width - 1);
            header[at..at + width].copy_from_slice(text.as_bytes());
        };
        octal(&mut header, 100, 8, u64::from(entry.mode));
        octal(&mut header, 108, 8, u64::from(entry.uid));
        octal(&mut header, 116, 8, u64::from(entry.uid));
        octal(&mut header, 124, 12, size as u64);
        octal(&mut header, 136, 12, 0);
        header[156] = if entry.body.is_none() { b'5' } else { b'0' };
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        if let Some(body) = &entry.body {
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The OCI architecture name of the machine the binary was built for.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds the layer, config, manifest and index of the image of `binary`: (blobs by digest,
/// index.json, manifest digest).
fn image(
    binary: Vec<u8>,
    name: &str,
    tag: &str,
    commit: &str,
) -> (BTreeMap<String, Vec<u8>>, Vec<u8>, String) {
    let file = |path: &str, mode, body: &str| Entry {
        path: path.into(),
        mode,
        uid: 0,
        body: Some(body.as_bytes().to_vec()),
    };
    let dir = |path: &str, mode, uid| Entry { path: path.into(), mode, uid, body: None };
    let layer = tar(&[
        dir("etc", 0o755, 0),
        file("etc/group", 0o644, "root:x:0:\nnonroot:x:65532:\n"),
        file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        ),
        dir("home", 0o755, 0),
        dir("home/nonroot", 0o700, IMAGE_UID),
        dir("tmp", 0o1777, 0),
        dir("usr", 0o755, 0),
        dir("usr/local", 0o755, 0),
        dir("usr/local/bin", 0o755, 0),
        Entry { path: BINARY_PATH.into(), mode: 0o755, uid: 0, body: Some(binary) },
    ]);
    let layer_digest = sha256(&layer);
    let epoch = "1970-01-01T00:00:00Z";
    let labels = json!({
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.description": "Kubernetes operator for VM-backed pods (Hibernation, CocoonSet)",
    });
    let config = serde_json::to_vec(&json!({
        "created": epoch,
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "User": format!("{IMAGE_UID}:{IMAGE_UID}"),
            "Entrypoint": [format!("/{BINARY_PATH}")],
            "Cmd": ["run"],
            "Env": ["PATH=/usr/local/bin"],
            "WorkingDir": "/",
            "ExposedPorts": {"8080/tcp": {}, "8081/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": epoch, "created_by": "cocoon-dev image"}],
    }))
    .expect("the config serializes");
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
        "annotations": labels,
    }))
    .expect("the manifest serializes");
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": oci_arch(), "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": tag,
                "io.containerd.image.name": format!("{name}:{tag}"),
            },
        }],
    }))
    .expect("the index serializes");
    let blobs = BTreeMap::from([
        (layer_digest, layer),
        (config_digest, config),
        (manifest_digest.clone(), manifest),
    ]);
    (blobs, index, manifest_digest)
}

/// Writes the image of `args.binary` into `args.out`.
pub fn write(args: &ImageArgs) -> Result<BuiltImage, ImageError> {
    let binary = std::fs::read(&args.binary)
        .map_err(|source| ImageError::Read { path: args.binary.clone(), source })?;
    check_static(&binary)
        .map_err(|reason| ImageError::NotStatic { path: args.binary.clone(), reason })?;
    let (name, tag) = args
        .tag
        .rsplit_once(':')
        .filter(|(n, t)| !n.is_empty() && !t.is_empty() && !t.contains('/'))
        .ok_or_else(|| ImageError::Reference(args.tag.clone()))?;
    let (blobs, index, manifest_digest) = image(binary, name, tag, &args.commit);

    let layout = args.out.join("oci");
    let write_file = |path: &Path, body: &[u8]| {
        std::fs::write(path, body).map_err(|source| ImageError::Write { path: path.into(), source })
    };
    let _ = std::fs::remove_dir_all(&layout);
    let blob_dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir)
        .map_err(|source| ImageError::Write { path: blob_dir.clone(), source })?;
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    write_file(&layout.join("oci-layout"), oci_layout)?;
    write_file(&layout.join("index.json"), &index)?;
    let mut archive_entries = vec![
        Entry { path: "blobs".into(), mode: 0o755, uid: 0, body: None },
        Entry { path: "blobs/sha256".into(), mode: 0o755, uid: 0, body: None },
    ];
    for (digest, body) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        write_file(&blob_dir.join(hex), body)?;
        archive_entries.push(Entry {
            path: format!("blobs/sha256/{hex}"),
            mode: 0o644,
            uid: 0,
            body: Some(body.clone()),
        });
    }
    archive_entries.push(Entry {
        path: "index.json".into(),
        mode: 0o644,
        uid: 0,
        body: Some(index),
    });
    archive_entries.push(Entry {
        path: "oci-layout".into(),
        mode: 0o644,
        uid: 0,
        body: Some(oci_layout.to_vec()),
    });
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let archive = args.out.join(format!("{file_name}-{tag}.oci.tar"));
    write_file(&archive, &tar(&archive_entries))?;
    Ok(BuiltImage { layout, archive, manifest_digest, reference: args.tag.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_or_foreign_file_is_refused_with_the_reason() {
        assert_eq!(check_static(b"#!/bin/sh\necho hi\n"), Err(NotStatic::NotElf));
        let this_test = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The test binary links glibc dynamically (unless the whole build is static).
        if let Err(reason) = check_static(&this_test) {
            assert_eq!(reason, NotStatic::Dynamic);
        }
    }

    #[test]
    fn tar_headers_carry_valid_checksums_and_entries_are_block_aligned() {
        let archive = tar(&[
            Entry { path: "d".into(), mode: 0o755, uid: 7, body: None },
            Entry { path: "d/f".into(), mode: 0o644, uid: 0, body: Some(b"hello".to_vec()) },
        ]);
        assert_eq!(archive.len(), 512 * 3 + 1024);
        let header = &archive[..512];
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        let mut copy = header.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&header[..2], b"d/");
        assert_eq!(&archive[1024..1029], b"hello");
    }

    #[test]
    fn the_image_is_reproducible_and_its_digests_name_its_blobs() {
        let (a, index_a, digest_a) = image(b"binary".to_vec(), "cocoon-operator", "0.1.0", "abc");
        let (b, index_b, digest_b) = image(b"binary".to_vec(), "cocoon-operator", "0.1.0", "abc");
        assert_eq!((&a, &index_a, &digest_a), (&b, &index_b, &digest_b));
        for (digest, body) in &a {
            assert_eq!(&sha256(body), digest);
        }
        let manifest: serde_json::Value = serde_json::from_slice(&a[&digest_a]).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&a[manifest["config"]["digest"].as_str().unwrap()]).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Labels"]["org.opencontainers.image.revision"], "abc");
        assert_eq!(config["rootfs"]["diff_ids"][0], manifest["layers"][0]["digest"]);
    }
}
