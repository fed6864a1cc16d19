//! Runs a target over many generated cases: deterministic from a seed,
//! bounded by a case count, and on a failure the input is saved and the
//! panic re-raised with how to replay it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How many cases, from which seed.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub cases: usize,
    pub seed: u64,
}

impl Budget {
    /// `cases` unless `IMGCLASS_FUZZ_CASES` asks for more or fewer (times
    /// `weight`, so one variable scales every target), from
    /// `IMGCLASS_FUZZ_SEED` or a fixed seed (CI is reproducible).
    pub fn from_env(cases: usize, weight: f64) -> Self {
        let cases = std::env::var("IMGCLASS_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(cases, |n| (n * weight).round().max(1.0) as usize);
        let seed = std::env::var("IMGCLASS_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x1316_0001);
        Budget { cases, seed }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub name: &'static str,
    pub cases: usize,
    pub took: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} cases in {:.1} s ({:.0}/s)",
            self.name,
            self.cases,
            self.took.as_secs_f64(),
            self.cases as f64 / self.took.as_secs_f64().max(1e-9)
        )
    }
}

/// Runs `check` on `budget.cases` inputs made by `make(case_seed)`. A
/// panic saves the input under `$IMGCLASS_FUZZ_CRASHES` (default
/// the system's temporary folder, `imgclass-fuzz-crashes`) and fails with the file and the seed.
pub fn run<M, C>(name: &'static str, budget: Budget, mut make: M, check: C) -> Report
where
    M: FnMut(u64) -> Vec<u8>,
    C: Fn(&[u8]),
{
    let started = Instant::now();
    for case in 0..budget.cases {
        let case_seed = budget.seed ^ ((case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let input = make(case_seed);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
            let saved = save(name, case_seed, &input);
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{name}: case {case} (case seed {case_seed:#x}, {} bytes) failed: {message}\n\
                 input saved to {saved}; replay with IMGCLASS_FUZZ_REPLAY={saved}",
                input.len()
            );
        }
    }
    Report {
        name,
        cases: budget.cases,
        took: started.elapsed(),
    }
}

/// Runs `check` on the file named by `IMGCLASS_FUZZ_REPLAY`, if set and
/// named after this target. Returns whether it did.
pub fn replay(name: &str, check: impl Fn(&[u8])) -> bool {
    let Ok(path) = std::env::var("IMGCLASS_FUZZ_REPLAY") else {
        return false;
    };
    let file = PathBuf::from(&path);
    let matches = file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&format!("{name}-")));
    if matches {
        check(&std::fs::read(&file).unwrap_or_else(|e| panic!("{path}: {e}")));
    }
    matches
}

fn save(name: &str, seed: u64, input: &[u8]) -> String {
    let dir = std::env::var("IMGCLASS_FUZZ_CRASHES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("imgclass-fuzz-crashes"));
    let path = dir.join(format!("{name}-{seed:016x}.bin"));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {e})"),
    }
}
