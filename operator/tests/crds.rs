//! The committed CRD files (crds/ and the Helm chart's copy) must match the
//! Rust types, and `tideway-operator crd` must print exactly those files.

use std::path::{Path, PathBuf};
use std::process::Command;

use tideway_operator::crd::{render_all_crds_yaml, render_crd_files};

const REGENERATE: &str =
    "cargo run -q -p tideway-operator -- crd --dir crds --dir charts/tideway-operator/files/crds";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

#[test]
fn committed_crds_match_the_rust_types() {
    let files = render_crd_files().expect("render CRDs");
    assert_eq!(files.len(), 4);
    let mut drifted = Vec::new();
    for dir in ["crds", "charts/tideway-operator/files/crds"] {
        for (name, want) in &files {
            let path = repo_root().join(dir).join(name);
            match std::fs::read_to_string(&path) {
                Ok(have) if &have == want => {}
                Ok(_) => drifted.push(format!("{} differs", path.display())),
                Err(err) => drifted.push(format!("{} unreadable: {err}", path.display())),
            }
        }
        let committed = std::fs::read_dir(repo_root().join(dir))
            .expect("read CRD dir")
            .count();
        if committed != files.len() {
            drifted.push(format!(
                "{dir} holds {committed} files, the types give {}",
                files.len()
            ));
        }
    }
    assert!(
        drifted.is_empty(),
        "CRD files drifted from the Rust types:\n  {}\nregenerate from the repository root with:\n  {REGENERATE}",
        drifted.join("\n  ")
    );
}

#[test]
fn crd_subcommand_prints_every_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_tideway-operator"))
        .arg("crd")
        .output()
        .expect("run binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(stdout, render_all_crds_yaml().expect("render"));
    assert_eq!(stdout.matches("kind: CustomResourceDefinition").count(), 4);
    assert!(stdout.contains("name: messageclusters.tideway.dev"));
    assert!(stdout.contains("name: topics.tideway.dev"));
    assert!(stdout.contains("name: consumerautoscalers.tideway.dev"));
    assert!(stdout.contains("name: mirrorpolicies.tideway.dev"));
}

#[test]
fn run_subcommand_rejects_bad_flags_naming_them() {
    for (flag, name) in [
        ("--resync-period=0s", "--resync-period"),
        ("--broker-image= ", "--broker-image"),
        ("--log=[", "--log"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tideway-operator"))
            .args(["run", flag, "--http-listen=127.0.0.1:0"])
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .expect("run binary");
        assert!(!output.status.success(), "{flag} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{flag}: {stderr}");
    }
}
