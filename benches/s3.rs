//! S3 download benchmark: this program against s5cmd (the fastest S3 downloader there is) and
//! parallel signed `curl --aws-sigv4` GETs, on the same s3rver on 127.0.0.1.
//!
//!     bash .ci/install-test-servers && cargo bench --bench s3
//!
//! Two sets: a model folder of 3 × 384 MiB shards plus small JSON files (1.13 GiB), and 2,000
//! files of 64 KiB. Runs alternate between the tools, and who goes first rotates each round,
//! so that a slow moment of the machine is shared out. Each run starts from an empty destination. For
//! each tool and set it prints the median MiB/s, client CPU seconds (user + system) per GiB,
//! the peak RSS (GNU time's %M: the largest process), and our ratio to s5cmd.
//!
//! On a 2-core machine the server and the client share the cores, so the CPU a client spends
//! per GiB decides how fast it can go. `BENCH_ROUNDS` sets the runs per tool and set (3).

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::s3::{S3rver, installed};
use support::{TempDir, bytes};

const MIB: u64 = 1 << 20;
// s3rver accepts any secret for its built-in key id; it checks no SigV4 signature.
const KEY_ID: &str = "S3RVER";
const SECRET: &str = "S3RVER";

struct Set {
    name: &'static str,
    prefix: &'static str,
    files: Vec<(String, u64)>,
}

impl Set {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

fn sets() -> Vec<Set> {
    let mut model: Vec<(String, u64)> = (1..=3)
        .map(|i| {
            (
                format!("model/model-0000{i}-of-00003.safetensors"),
                384 * MIB,
            )
        })
        .collect();
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
    ] {
        model.push((format!("model/{name}"), 2_000));
    }
    model.push(("model/tokenizer.json".into(), 1_800_000));
    let small = (0..2000)
        .map(|i| (format!("small/{:02}/f{i:04}.bin", i % 20), 64 * 1024))
        .collect();
    // The many-files set first: deleting the large set's gigabytes leaves the file system
    // busy (freeing and discarding blocks) for a while afterwards.
    vec![
        Set {
            name: "2,000 x 64 KiB",
            prefix: "small",
            files: small,
        },
        Set {
            name: "model folder (3 x 384 MiB + 4 small)",
            prefix: "model",
            files: model,
        },
    ]
}

// Puts every object of `set` into bucket `bench`, from 8 threads.
fn seed(s3: &S3rver, set: &Set) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((key, size)) = set.files.get(i) else {
                        return;
                    };
                    s3.put("bench", key, &bytes(*size as usize, i as u32));
                }
            });
        }
    });
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Ours,
    S5cmd,
    Curl,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ours => "mr-storage-initializer",
            Tool::S5cmd => "s5cmd 2.3.0",
            Tool::Curl => "curl --aws-sigv4 --parallel (8)",
        }
    }
}

struct Measure {
    seconds: f64,
    cpu: f64,
    rss_kib: u64,
}

// Runs `cmd` under GNU time; returns wall, user + system CPU and peak RSS.
fn timed(cmd: Command, what: &str) -> Measure {
    let report = std::env::temp_dir().join(format!("mrsi-bench-time-{}", std::process::id()));
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    timed.stdout(std::process::Stdio::null());
    let start = Instant::now();
    let out = timed
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/time (GNU time) for {what}: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let n = fields.len();
    let (user, sys, rss) = (&fields[n - 3], &fields[n - 2], &fields[n - 1]);
    Measure {
        seconds,
        cpu: user.parse::<f64>().unwrap() + sys.parse::<f64>().unwrap(),
        rss_kib: rss.parse().unwrap(),
    }
}

// A command with only the variables the run needs: the machine's own AWS_CA_BUNDLE or
// proxies must not reach any of the tools.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1");
    cmd
}

fn command(tool: Tool, s3: &S3rver, set: &Set, dest: &Path, curl_config: &Path) -> Command {
    let mut cmd;
    match tool {
        Tool::Ours => {
            cmd = clean(env!("CARGO_BIN_EXE_mr-storage-initializer"));
            cmd.arg(format!("s3://bench/{}", set.prefix)).arg(dest);
            cmd.env("AWS_ENDPOINT_URL", s3.endpoint())
                .env("RUST_LOG", "warn");
        }
        Tool::S5cmd => {
            cmd = clean(installed("bin/s5cmd"));
            cmd.args(["--endpoint-url", &s3.endpoint(), "cp"])
                .arg(format!("s3://bench/{}/*", set.prefix))
                .arg(format!("{}/", dest.display()));
        }
        Tool::Curl => {
            cmd = clean("curl");
            cmd.args(["--silent", "--fail", "--parallel", "--parallel-max", "8"])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
                .args(["--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args(["--user", &format!("{KEY_ID}:{SECRET}")])
                .arg("--create-dirs")
                .arg("--config")
                .arg(curl_config);
        }
    }
    cmd
}

fn curl_config(s3: &S3rver, set: &Set, dest: &Path, path: &Path) {
    let mut text = String::new();
    for (key, _) in &set.files {
        let relative = key
            .strip_prefix(set.prefix)
            .unwrap()
            .trim_start_matches('/');
        text.push_str(&format!(
            "url = \"{}/bench/{key}\"\noutput = \"{}/{relative}\"\n",
            s3.endpoint(),
            dest.display()
        ));
    }
    std::fs::write(path, text).unwrap();
}

// Every file of `set` is in `dest` with the right size.
fn check(set: &Set, dest: &Path, tool: Tool) {
    for (key, size) in &set.files {
        let relative = key
            .strip_prefix(set.prefix)
            .unwrap()
            .trim_start_matches('/');
        let got = std::fs::metadata(dest.join(relative)).map(|m| m.len());
        assert_eq!(got.ok(), Some(*size), "{}: {relative}", tool.name());
    }
}

fn sync() {
    let ok = Command::new("sync").status().is_ok_and(|s| s.success());
    assert!(ok, "sync failed");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    installed("bin/s5cmd");
    let s3 = S3rver::start();
    s3.bucket("bench");
    let sets = sets();
    let started = Instant::now();
    for set in &sets {
        seed(&s3, set);
    }
    eprintln!(
        "seeded s3rver ({}) in {:.1} s",
        s3.endpoint(),
        started.elapsed().as_secs_f64()
    );
    // ext4 avoids reusing inodes deleted in the last half minute, and searching past them
    // makes creating files slow: a run started right after seeding, or after another
    // benchmark's clean-up, creates its 2,000 files at half speed.
    sync();
    std::thread::sleep(std::time::Duration::from_secs(35));
    let work = TempDir::new("bench-s3");
    let tools = [Tool::Ours, Tool::S5cmd, Tool::Curl];
    println!(
        "\n{:<38} {:<32} {:>9} {:>12} {:>10}",
        "set", "tool", "MiB/s", "CPU s/GiB", "peak RSS"
    );
    for (i, set) in sets.iter().enumerate() {
        if i > 0 {
            // Let the previous set's deletions settle (see above).
            sync();
            std::thread::sleep(std::time::Duration::from_secs(35));
        }
        let gib = set.bytes() as f64 / (1u64 << 30) as f64;
        let mut results: Vec<Vec<Measure>> = tools.iter().map(|_| Vec::new()).collect();
        // Each run writes into a folder of its own. Deleting thousands of files just before a
        // run makes ext4 slow to allocate inodes for a while (it avoids reusing recently
        // deleted ones), which would tax whichever tool runs next: the many-files set is
        // deleted only after all its runs. Dirty pages are flushed before each run, so no
        // run pays for the previous one's writeback.
        let many_files = set.files.len() > 100;
        let mut run = 0;
        // Round 0 warms up (server caches, the connection path) and is not counted.
        for round in 0..=rounds {
            // Who goes first rotates, so no tool always follows the same one.
            for step in 0..tools.len() {
                let t = (round + step) % tools.len();
                let tool = tools[t];
                run += 1;
                let dest: PathBuf = work.path().join(format!("{}-{run}", set.prefix));
                std::fs::create_dir_all(&dest).unwrap();
                let config = work.path().join("curl.cfg");
                curl_config(&s3, set, &dest, &config);
                sync();
                let m = timed(command(tool, &s3, set, &dest, &config), tool.name());
                check(set, &dest, tool);
                let counted = round > 0;
                eprintln!(
                    "{} / {}{}: {:.2} s, {:.2} CPU s, {} KiB",
                    set.prefix,
                    tool.name(),
                    if counted { "" } else { " (warm-up)" },
                    m.seconds,
                    m.cpu,
                    m.rss_kib
                );
                if counted {
                    results[t].push(m);
                }
                if !many_files {
                    std::fs::remove_dir_all(&dest).unwrap();
                }
            }
        }
        for run in 1..=run {
            let _ = std::fs::remove_dir_all(work.path().join(format!("{}-{run}", set.prefix)));
        }
        let mut speeds = Vec::new();
        for (t, &tool) in tools.iter().enumerate() {
            let runs = &results[t];
            let speed = median(
                runs.iter()
                    .map(|m| set.bytes() as f64 / MIB as f64 / m.seconds)
                    .collect(),
            );
            let cpu = median(runs.iter().map(|m| m.cpu / gib).collect());
            let rss = runs.iter().map(|m| m.rss_kib).max().unwrap_or(0);
            speeds.push(speed);
            println!(
                "{:<38} {:<32} {:>9.0} {:>12.2} {:>7.1} MiB",
                set.name,
                tool.name(),
                speed,
                cpu,
                rss as f64 / 1024.0
            );
        }
        println!(
            "{:<38} {:<32} {:>9.2}x s5cmd\n",
            set.name,
            "ratio",
            speeds[0] / speeds[1]
        );
    }
}
