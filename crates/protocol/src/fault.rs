//! Fault injection for crash tests: `FLOWMERGE_FAULT=<step>` makes the process exit abruptly at
//! that step of the protocol, as a kill would, so tests can prove recovery without timing games.

/// Exit code of an injected crash.
pub const FAULT_EXIT_CODE: i32 = 86;

/// Steps where a crash can be injected.
/// `flowmerge compact`: after-claim, then the batch protocol's (`flowmerge_core::exec::execute`). Mapper:
/// after-manifest, after-claim, after-seal, after-send, before-delete. The batch protocol, for
/// compact and the merger alike: after-write, before-commit, after-commit (for the merger: before
/// deleting the job). A rollup (`rollup::run_partition`): rollup-after-write, rollup-after-commit,
/// rollup-during-deletes (after the first delete).
pub const STEPS: &[&str] = &[
    "after-manifest",
    "after-claim",
    "after-seal",
    "after-send",
    "before-delete",
    "after-write",
    "before-commit",
    "after-commit",
    "rollup-after-write",
    "rollup-after-commit",
    "rollup-during-deletes",
];

/// Exits the process if `FLOWMERGE_FAULT` names this step.
pub fn point(step: &str) {
    if std::env::var("FLOWMERGE_FAULT").is_ok_and(|v| v == step) {
        eprintln!("flowmerge: injected fault at {step}: exiting");
        std::process::exit(FAULT_EXIT_CODE);
    }
}
