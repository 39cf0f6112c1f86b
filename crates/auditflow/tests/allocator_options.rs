//! The binary's allocator runs with the options `auditflow::allocator`
//! sets, and they are in place before mimalloc initialises (they are read
//! then, which is why they are set from an ELF constructor rather than in
//! `main`). mimalloc prints its effective options at start-up when
//! `MIMALLOC_VERBOSE=1`.

use std::process::Command;

#[test]
fn the_binary_starts_with_arenas_committed_on_demand_and_immediate_purging() {
    let out = Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        // The environment must not be what sets them.
        .env_remove("MIMALLOC_PURGE_DELAY")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .output()
        .expect("run auditflow --version");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in ["option 'arena_eager_commit': 0", "option 'purge_delay': 0"] {
        assert!(
            stderr.lines().any(|l| l.trim_end() == expected),
            "{expected:?} not in mimalloc's start-up report:\n{stderr}"
        );
    }
}
