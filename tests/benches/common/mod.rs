//! What the benchmarks share: the check that the release binaries are up to date, sample
//! statistics, and reading vmnetd's debug log. Each bench uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::SystemTime;

use vmnet_tests::workspace_root;

/// How to build what the benchmarks run.
pub const BUILD: &str = "cargo build --release -p vmnetd -p vmnet-dispatcher && cargo bench -p vmnet-tests";

/// Exits with a message unless `chosen` (what the harness found for `name`, or the error why it
/// found nothing) is `target/release/NAME` next to this bench and newer than the sources of
/// `crates` (and the workspace's Cargo.toml and Cargo.lock). With `env_var` set, `chosen` is
/// taken as it is.
pub fn release_binary(
    name: &str,
    env_var: &str,
    chosen: std::io::Result<PathBuf>,
    crates: &[&str],
) -> PathBuf {
    let fail = |msg: String| -> ! {
        eprintln!("error: {msg}\n  build it first: {BUILD}");
        exit(2)
    };
    let chosen = chosen.unwrap_or_else(|e| fail(e.to_string()));
    if std::env::var_os(env_var).is_some() {
        println!("({env_var} is set: benchmarking that {name} as it is)");
        return chosen;
    }
    let exe = std::env::current_exe().expect("path of the bench executable");
    // The harness's first choice: target/release/deps/<bench> -> target/release/NAME.
    let release = exe.parent().and_then(Path::parent).map(|dir| dir.join(name)).unwrap_or_default();
    if !release.is_file() {
        fail(format!("{} not found", release.display()));
    }
    if fs::canonicalize(&chosen).ok() != fs::canonicalize(&release).ok() {
        fail(format!("the harness would run {} instead of {}", chosen.display(), release.display()));
    }
    let built = mtime(&release).unwrap_or_else(|| fail(format!("cannot stat {}", release.display())));
    let root = workspace_root();
    let mut sources = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    for krate in crates {
        sources.push(root.join(krate).join("Cargo.toml"));
        files_under(&root.join(krate).join("src"), &mut sources);
    }
    if let Some((newest, when)) = sources.iter().filter_map(|p| Some((p, mtime(p)?))).max_by_key(|(_, t)| *t)
    {
        if when > built {
            fail(format!("{} is older than {}", release.display(), newest.display()));
        }
    }
    release
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Durations in milliseconds, sorted.
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn new(mut ms: Vec<f64>) -> Samples {
        ms.sort_by(f64::total_cmp);
        Samples(ms)
    }

    pub fn from_us(us: &[u64]) -> Samples {
        Samples::new(us.iter().map(|&u| u as f64 / 1000.0).collect())
    }

    /// Nearest-rank percentile.
    pub fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn summary(&self) -> String {
        format!(
            "n={:<4} min {:>7.2}  p50 {:>7.2}  p90 {:>7.2}  p99 {:>7.2}  max {:>7.2} ms",
            self.0.len(),
            self.pct(0.0),
            self.pct(50.0),
            self.pct(90.0),
            self.pct(99.0),
            self.pct(100.0)
        )
    }

    pub fn min_median_max(&self) -> String {
        format!("min {:>7.2}  median {:>7.2}  max {:>7.2} ms", self.pct(0.0), self.pct(50.0), self.pct(100.0))
    }
}

/// `ms` in the order taken, one decimal each: "5.1 5.3 4.9".
pub fn each(ms: &[f64]) -> String {
    ms.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(" ")
}

/// The file's text from byte `offset` on.
pub fn text_since(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned()
}

/// The file's length (where `text_since` starts the new part).
pub fn text_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
}

/// The `elapsed=` of every `converged` debug line in `log`, in milliseconds.
pub fn converge_times(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|line| line.split_once("converged elapsed=")?.1.split_whitespace().next())
        .filter_map(parse_debug_duration)
        .collect()
}

/// vmnetd's own converge time for a re-home: the converge logged last before "re-homed".
pub fn rehome_converge(log: &str) -> Option<f64> {
    converge_times(log.split("re-homed ").next().unwrap_or_default()).last().copied()
}

/// A `Duration`'s Debug form ("1.5ms", "812.3µs", "2.1s", "900ns") in milliseconds.
fn parse_debug_duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "s" => 1000.0,
        "ms" => 1.0,
        "µs" | "us" => 1e-3,
        "ns" => 1e-6,
        _ => return None,
    };
    Some(number * factor)
}
