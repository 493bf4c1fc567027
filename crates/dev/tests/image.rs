//! The operator's OCI image, built without a container engine (`make image`): unpacked with tar
//! (a reader that is not ours), then its binary is run from that root filesystem as the image's
//! user: `--version` names the commit, `crd` prints the committed CRDs, `run` fails cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cocoon_dev::image::{BINARY_PATH, IMAGE_UID, ImageArgs, ImageError};

fn repo() -> PathBuf {
    cocoon_dev::testing::repo_path("")
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs the image's binary from `rootfs` as the image's user (chroot, when we may), else as is.
fn in_image(rootfs: &Path, args: &[&str]) -> Output {
    let root = text(&run(Command::new("id").arg("-u"))) == "0";
    let mut command = if root {
        // Resolved on our PATH: the child's PATH is the image's.
        let chroot = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|dir| Path::new(dir).join("chroot"))
            .find(|p| p.is_file())
            .expect("chroot (coreutils) on PATH");
        let mut c = Command::new(chroot);
        c.arg(format!("--userspec={IMAGE_UID}:{IMAGE_UID}"))
            .arg(rootfs)
            .arg(format!("/{BINARY_PATH}"));
        c
    } else {
        eprintln!("not root: running the image's binary without chroot");
        Command::new(rootfs.join(BINARY_PATH))
    };
    command.args(args).env_clear().env("PATH", "/usr/local/bin");
    command.output().expect("run the image's binary")
}

#[test]
fn the_image_unpacks_to_a_shell_less_root_whose_binary_runs_as_the_image_user() {
    let built =
        run(Command::new("bash").arg(repo().join("hack/static-binary.sh")).current_dir(repo()));
    let binary = repo().join(text(&built));
    let commit = text(&run(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())));
    let out = tempfile::tempdir().unwrap();
    let image = cocoon_dev::image::write(&ImageArgs {
        binary,
        tag: "cocoon-operator:0.1.0".into(),
        commit: commit.clone(),
        out: out.path().to_path_buf(),
    })
    .expect("write the image");

    // The layout: every blob is named by its SHA-256 (checked with sha256sum).
    let layout = &image.layout;
    assert_eq!(json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    let blobs = layout.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let sum = text(&run(Command::new("sha256sum").arg(&path)));
        assert_eq!(sum.split_whitespace().next(), path.file_name().unwrap().to_str());
    }
    let index = json(&layout.join("index.json"));
    let manifest_ref = &index["manifests"][0];
    assert_eq!(manifest_ref["annotations"]["org.opencontainers.image.ref.name"], "0.1.0");
    let blob = |digest: &serde_json::Value| {
        blobs.join(digest.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let manifest = json(&blob(&manifest_ref["digest"]));
    assert_eq!(manifest_ref["digest"].as_str(), Some(image.manifest_digest.as_str()));
    let config = json(&blob(&manifest["config"]["digest"]));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"][0], format!("/{BINARY_PATH}"));
    assert_eq!(config["config"]["Cmd"][0], "run");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.revision"], commit);
    assert_eq!(config["os"], "linux");

    // Unpack with GNU tar, as a runtime would.
    let rootfs = out.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        run(Command::new("tar").arg("-xf").arg(blob(&layer["digest"])).arg("-C").arg(&rootfs));
    }
    assert!(!rootfs.join("bin/sh").exists(), "no shell in the image");
    assert!(rootfs.join(BINARY_PATH).is_file());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let archive = text(&run(Command::new("tar").arg("-tf").arg(&image.archive)));
    assert!(
        archive.lines().any(|l| l == "index.json") && archive.lines().any(|l| l == "oci-layout")
    );

    let version = in_image(&rootfs, &["--version"]);
    assert!(version.status.success(), "{}", String::from_utf8_lossy(&version.stderr));
    assert_eq!(text(&version), format!("cocoon-operator 0.1.0 (commit {commit})"));
    let crd = in_image(&rootfs, &["crd"]);
    assert!(crd.status.success(), "{}", String::from_utf8_lossy(&crd.stderr));
    let committed: String = ["deploy/crd.yaml", "deploy/cocoonset-crd.yaml"]
        .iter()
        .map(|f| format!("---\n{}", std::fs::read_to_string(repo().join(f)).unwrap()))
        .collect();
    assert!(
        String::from_utf8_lossy(&crd.stdout) == committed,
        "crd in the image prints the committed CRDs"
    );
    // No cluster and no kubeconfig in the image: a clear error, not a crash.
    let lonely = in_image(&rootfs, &["run"]);
    assert_eq!(lonely.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lonely.stderr).starts_with("error: "), "{lonely:?}");
}

#[test]
fn a_dynamically_linked_binary_is_refused_with_the_way_to_build_a_static_one() {
    let out = tempfile::tempdir().unwrap();
    let result = cocoon_dev::image::write(&ImageArgs {
        binary: std::env::current_exe().unwrap(),
        tag: "cocoon-operator:0.1.0".into(),
        commit: "x".into(),
        out: out.path().to_path_buf(),
    });
    match result {
        Err(e @ ImageError::NotStatic { .. }) => {
            assert!(e.to_string().contains("make image"), "{e}")
        }
        other => panic!("a dynamic test binary must be refused: {other:?}"),
    }
}
