//! What the fuzz targets share: a bounded proptest config, the committed seeds, and a small
//! mutation engine over bytes (the stable toolchain has no libFuzzer: proptest drives inputs
//! from random seeds, shrinks a failure to a small case, and records its seed).
//!
//! A run is bounded: `OQS_EDGE_FUZZ_CASES` sets the cases per target (default: each target's
//! own, about ten seconds of a debug build). `OQS_EDGE_FUZZ_CASES=100000 cargo test --release
//! -p oqs-edge --test fuzz_config` runs a long campaign.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// The proptest config of a target: `default_cases` unless the environment says otherwise;
/// failures are recorded under tests/fuzz/ (committed: replayed first on every run).
pub fn config(target: &'static str, default_cases: u32) -> Config {
    let cases = std::env::var("OQS_EDGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let file: &'static str = Box::leak(
        format!(
            "{}/tests/fuzz/{target}.proptest-regressions",
            env!("CARGO_MANIFEST_DIR")
        )
        .into_boxed_str(),
    );
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        // Shrinking a failure in a big input can take long: bound it.
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// The files of `tests/fuzz/corpus/<target>/` and any `extra` files, as bytes.
pub fn seeds(target: &str, extra: &[PathBuf]) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.extend(extra.iter().cloned());
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Delete `len` bytes at `at` (both taken modulo the input).
    Delete { at: usize, len: usize },
    /// Insert bytes at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Overwrite one byte.
    Flip { at: usize, byte: u8 },
    /// Copy `len` bytes from `from` to `at` (repeats a line, a key, a block).
    Splice { from: usize, len: usize, at: usize },
    /// Truncate (an early close, a half-written file).
    Truncate { at: usize },
}

impl Mutation {
    pub fn apply(&self, input: &mut Vec<u8>) {
        let n = input.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
        match self {
            Mutation::Delete { at, len } => {
                let start = pos(*at);
                let end = (start + len % 64).min(n);
                input.drain(start..end);
            }
            Mutation::Insert { at, bytes } => {
                let at = pos(*at);
                input.splice(at..at, bytes.iter().copied());
            }
            Mutation::Flip { at, byte } => {
                if n > 0 {
                    input[at % n] = *byte;
                }
            }
            Mutation::Splice { from, len, at } => {
                if n > 0 {
                    let start = from % n;
                    let end = (start + len % 256).min(n);
                    let piece: Vec<u8> = input[start..end].to_vec();
                    let at = pos(*at);
                    input.splice(at..at, piece);
                }
            }
            Mutation::Truncate { at } => input.truncate(pos(*at)),
        }
    }
}

/// Mutations whose inserted bytes come from `dictionary` (tokens of the format) or are random.
pub fn mutation(dictionary: &'static [&'static [u8]]) -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        3 => proptest::sample::select(dictionary).prop_map(|t| t.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        2 => (any::<usize>(), 0usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        4 => (any::<usize>(), token).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        2 => (any::<usize>(), 0usize..256, any::<usize>())
            .prop_map(|(from, len, at)| Mutation::Splice { from, len, at }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// A seed with up to `max` mutations applied.
pub fn mutated(
    seeds: Vec<Vec<u8>>,
    dictionary: &'static [&'static [u8]],
    max: usize,
) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec(mutation(dictionary), 0..=max),
    )
        .prop_map(|(mut input, mutations)| {
            for m in &mutations {
                m.apply(&mut input);
            }
            input
        })
}
