//! `cargo xtask reproduce` builds `hieramas` with `cargo build -p xtask -p hieramas-cli` from a
//! process that `cargo run -p xtask` started. That second build compiles only the CLI itself when
//! the two graphs resolve every shared crate with the same features — true while xtask depends on
//! all of hieramas-cli's dependencies with their features (xtask/Cargo.toml). On a 2-core machine
//! a mismatch costs minutes of a fresh clone's reproduce (benchmarks/reproduce.md).

use std::collections::BTreeSet;
use std::process::Command;

/// `package version features` of every normal and build dependency the selected packages resolve.
fn resolved(packages: &[&str]) -> BTreeSet<String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "-e", "normal,build", "--prefix", "none"])
        .args(["-f", "{p} {f}"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches(" (*)").trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with("hieramas-cli ") && !l.starts_with("xtask "))
        .collect()
}

#[test]
fn building_the_cli_beside_xtask_changes_no_features() {
    let xtask = resolved(&["xtask"]);
    let both = resolved(&["xtask", "hieramas-cli"]);
    let only_xtask: Vec<_> = xtask.difference(&both).collect();
    let only_both: Vec<_> = both.difference(&xtask).collect();
    assert!(
        only_xtask.is_empty() && only_both.is_empty(),
        "xtask's graph is no longer a superset of hieramas-cli's (add the CLI's dependencies and \
         features to xtask/Cargo.toml):\n  xtask alone: {only_xtask:?}\n  with the CLI: {only_both:?}"
    );
}
