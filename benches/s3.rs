//! S3 download benchmark: this program against s5cmd (the fastest S3 downloader there is) and
//! parallel signed `curl --aws-sigv4` GETs, on the same s3rver on 127.0.0.1.
//!
//!     bash .ci/install-test-servers && cargo bench --bench s3
//!     BENCH_QUICK=1 cargo bench --bench s3    # small sets, one round: checks the harness
//!
//! Two sets: a model folder of 4 × 512 MiB shards plus 20 small files (2 GiB), and 2,000
//! files of 64 KiB. Four cases, each run on both sets:
//! - `http`: plain HTTP;
//! - `https`: the same through TLS with a private CA, terminated by s3rver itself (node's
//!   OpenSSL, AES-GCM): no proxy hop to add its own copies, and the server's cost is the
//!   same whichever client asks, while the client CPU measured is the client's alone;
//! - `1 core`: plain HTTP with every client pinned to CPU 0 (`taskset -c 0`), as under
//!   KServe's default 1-CPU limit, and the server on the other CPUs. The server is
//!   `support::s3static` (sendfile, a thread per connection), not s3rver: pinned clients
//!   waited on node, which bounded them all alike, so the case would measure the server.
//! - `1core-mem`: the same into a memory-backed folder (`/dev/shm`, as a pod's
//!   `emptyDir: {medium: Memory}`): no disk to bound any tool, so the client's CPU per GiB
//!   alone decides its speed.
//!
//! Runs alternate between the tools, and who goes first rotates each round, so that a slow
//! moment of the machine is shared out. Each run starts from an empty destination. For each
//! case, set and tool it prints the median MiB/s, the median client CPU seconds (user +
//! system) per GiB, the peak RSS (GNU time's %M: the largest process), and our ratios to
//! s5cmd (speed, and CPU per GiB), then the whole table again at the end.
//!
//! On a 2-core machine the server and the client share the cores, so the CPU a client spends
//! per GiB decides how fast it can go. `BENCH_ROUNDS` sets the counted runs per tool, set and
//! case (3; 1 with `BENCH_QUICK`); `BENCH_CASES` picks cases (`http,https,1core,1core-mem`).

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::s3::{S3rver, installed};
use support::tls::{Certs, make_certs};
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

// The full sets, or (quick) a 200-file set and 2 × 96 MiB shards: still ranged parts.
fn sets(quick: bool) -> Vec<Set> {
    let (shards, shard_size, smalls) = if quick {
        (2, 96 * MIB, 200)
    } else {
        (4, 512 * MIB, 2000)
    };
    let mut model: Vec<(String, u64)> = (1..=shards)
        .map(|i| {
            (
                format!("model/model-0000{i}-of-0000{shards}.safetensors"),
                shard_size,
            )
        })
        .collect();
    for i in 0..19 {
        model.push((format!("model/config-{i:02}.json"), 2_000 + i * 100));
    }
    model.push(("model/tokenizer.json".into(), 1_800_000));
    let small = (0..smalls)
        .map(|i| (format!("small/{:02}/f{i:04}.bin", i % 20), 64 * 1024))
        .collect();
    // The many-files set first: deleting the large set's gigabytes leaves the file system
    // busy (freeing and discarding blocks) for a while afterwards.
    vec![
        Set {
            name: if quick {
                "200 x 64 KiB"
            } else {
                "2,000 x 64 KiB"
            },
            prefix: "small",
            files: small,
        },
        Set {
            name: if quick {
                "model (2 x 96 MiB + 20 small)"
            } else {
                "model (4 x 512 MiB + 20 small)"
            },
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

// Runs `cmd` under GNU time (pinned to CPU 0 with `one_core`); returns wall, user + system
// CPU and peak RSS.
fn timed(cmd: Command, what: &str, one_core: bool) -> Measure {
    let report = std::env::temp_dir().join(format!("mrsi-bench-time-{}", std::process::id()));
    let mut timed = Command::new("/usr/bin/time");
    // Only `cmd`'s variables (see `clean`): a Command made anew inherits the whole
    // environment, and the machine's own AWS_CA_BUNDLE overrode s5cmd's CA.
    timed.env_clear();
    timed.arg("-f").arg("%U %S %M").arg("-o").arg(&report);
    if one_core {
        // taskset execs the client: GNU time measures the client itself.
        timed.args(["taskset", "-c", "0"]);
    }
    timed.arg(cmd.get_program()).args(cmd.get_args());
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

// `ca`: the private CA that signed the server's certificate (TLS cases).
fn command(
    tool: Tool,
    endpoint: &str,
    set: &Set,
    dest: &Path,
    curl_config: &Path,
    ca: Option<&Path>,
) -> Command {
    let mut cmd;
    match tool {
        Tool::Ours => {
            cmd = clean(env!("CARGO_BIN_EXE_mr-storage-initializer"));
            cmd.arg(format!("s3://bench/{}", set.prefix)).arg(dest);
            cmd.env("AWS_ENDPOINT_URL", endpoint)
                .env("RUST_LOG", "warn");
            if let Some(ca) = ca {
                cmd.env("AWS_CA_BUNDLE", ca);
            }
        }
        Tool::S5cmd => {
            cmd = clean(installed("bin/s5cmd"));
            cmd.args(["--endpoint-url", endpoint, "cp"])
                .arg(format!("s3://bench/{}/*", set.prefix))
                .arg(format!("{}/", dest.display()));
            if let Some(ca) = ca {
                // The AWS SDK for Go takes AWS_CA_BUNDLE; Go's own roots, SSL_CERT_FILE.
                cmd.env("AWS_CA_BUNDLE", ca).env("SSL_CERT_FILE", ca);
            }
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
            if let Some(ca) = ca {
                cmd.arg("--cacert").arg(ca);
            }
        }
    }
    cmd
}

fn curl_config(endpoint: &str, set: &Set, dest: &Path, path: &Path) {
    let mut text = String::new();
    for (key, _) in &set.files {
        let relative = key
            .strip_prefix(set.prefix)
            .unwrap()
            .trim_start_matches('/');
        text.push_str(&format!(
            "url = \"{endpoint}/bench/{key}\"\noutput = \"{}/{relative}\"\n",
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

// Pins every thread of process `pid` to `cpus` (a taskset list).
fn pin(pid: u32, cpus: &str) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -a -p -c {cpus} {pid} failed");
}

// What the machine is, for the table's caption.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1u64 << 20) as f64);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} CPUs ({model}), {mem_gib:.0} GiB RAM, Linux {}",
        cpus(),
        kernel.trim()
    )
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    tls: bool,
    one_core: bool,
    // Downloads go to tmpfs (`/dev/shm`) rather than the disk.
    memory: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "http",
        tls: false,
        one_core: false,
        memory: false,
    },
    Case {
        name: "https",
        tls: true,
        one_core: false,
        memory: false,
    },
    Case {
        name: "1core",
        tls: false,
        one_core: true,
        memory: false,
    },
    Case {
        name: "1core-mem",
        tls: false,
        one_core: true,
        memory: true,
    },
];

// A folder of this run on tmpfs, for the `1core-mem` case; removed when dropped.
struct MemoryDir(PathBuf);

impl MemoryDir {
    fn new() -> MemoryDir {
        let shm = Path::new("/dev/shm");
        let tmpfs = rustix::fs::statfs(shm).is_ok_and(|fs| fs.f_type == libc::TMPFS_MAGIC);
        assert!(tmpfs, "the 1core-mem case needs /dev/shm on tmpfs");
        // One run's copy of the largest set at a time (each is removed after its run).
        let free = rustix::fs::statvfs(shm).map_or(0, |fs| fs.f_bavail * fs.f_frsize);
        assert!(
            free >= 3 << 30,
            "the 1core-mem case needs 3 GiB free in /dev/shm, it has {free} bytes"
        );
        let dir = shm.join(format!("mrsi-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        MemoryDir(dir)
    }
}

impl Drop for MemoryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Starts s3rver (over TLS with `certs`) and puts every set into its bucket `bench`.
fn server(certs: Option<&Certs>, sets: &[Set]) -> S3rver {
    let s3 = match certs {
        Some(certs) => S3rver::start_tls(certs),
        None => S3rver::start(),
    };
    s3.bucket("bench");
    let started = Instant::now();
    for set in sets {
        seed(&s3, set);
    }
    eprintln!(
        "seeded s3rver ({}) in {:.1} s",
        s3.endpoint(),
        started.elapsed().as_secs_f64()
    );
    s3
}

// The one-core case's server: this benchmark's own executable run again as
// `support::s3static` over a folder holding the sets, in a process of its own so it can be
// pinned like s3rver. Killed by its process id when dropped.
struct StaticS3 {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

impl StaticS3 {
    fn start(sets: &[Set]) -> StaticS3 {
        let dir = TempDir::new("s3static");
        let started = Instant::now();
        for set in sets {
            for (i, (key, size)) in set.files.iter().enumerate() {
                let path = dir.path().join("bench").join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes(*size as usize, i as u32)).unwrap();
            }
        }
        let port = support::closed_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .env(SERVE, dir.path())
            .env(SERVE_PORT, port.to_string())
            .spawn()
            .expect("cannot start the static S3 server");
        let server = StaticS3 {
            child,
            port,
            _dir: dir,
        };
        // It indexes (and hashes) every file before it listens.
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the static S3 server never listened"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!(
            "seeded the static S3 server ({}) in {:.1} s",
            server.endpoint(),
            started.elapsed().as_secs_f64()
        );
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StaticS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Set in the environment of the benchmark's second process, which then serves that folder.
const SERVE: &str = "MRSI_BENCH_SERVE";
const SERVE_PORT: &str = "MRSI_BENCH_SERVE_PORT";

fn main() {
    if let Some(root) = std::env::var_os(SERVE) {
        let port = std::env::var(SERVE_PORT).unwrap();
        let _server =
            support::s3static::S3Static::start(Path::new(&root), &format!("127.0.0.1:{port}"));
        loop {
            std::thread::park();
        }
    }
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let quick = std::env::var_os("BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let wanted =
        std::env::var("BENCH_CASES").unwrap_or_else(|_| "http,https,1core,1core-mem".into());
    let cases: Vec<Case> = CASES
        .into_iter()
        .filter(|c| wanted.split(',').any(|w| w.trim() == c.name))
        .collect();
    assert!(
        !cases.is_empty(),
        "BENCH_CASES={wanted}: no case among http, https, 1core, 1core-mem"
    );
    // ext4 avoids reusing inodes deleted in the last half minute, and searching past them
    // makes creating files slow: a run started right after seeding, or after another
    // set's clean-up, creates its 2,000 files at half speed.
    let settle = std::time::Duration::from_secs(if quick { 1 } else { 35 });
    installed("bin/s5cmd");
    let sets = sets(quick);
    let work = TempDir::new("bench-s3");
    let certs = make_certs(work.path());
    let plain = cases
        .iter()
        .any(|c| !c.tls && !c.one_core)
        .then(|| server(None, &sets));
    let tls = cases
        .iter()
        .any(|c| c.tls)
        .then(|| server(Some(&certs), &sets));
    let fast = cases
        .iter()
        .any(|c| c.one_core)
        .then(|| StaticS3::start(&sets));
    let memory = cases.iter().any(|c| c.memory).then(MemoryDir::new);
    let machine = machine();
    eprintln!("machine: {machine}");
    let tools = [Tool::Ours, Tool::S5cmd, Tool::Curl];
    let mut table = vec![format!(
        "| case | set | tool | MiB/s | client CPU s/GiB | peak RSS | vs s5cmd: speed, CPU/GiB |\n|---|---|---|---|---|---|---|"
    )];
    for case in &cases {
        // (endpoint, server process)
        let (endpoint, server_pid) = if case.one_core {
            let s3 = fast.as_ref().unwrap();
            (s3.endpoint(), s3.child.id())
        } else {
            let s3 = if case.tls { &tls } else { &plain }.as_ref().unwrap();
            (s3.endpoint(), s3.pid())
        };
        let ca = case.tls.then_some(certs.ca.as_path());
        let dests = match &memory {
            Some(memory) if case.memory => memory.0.as_path(),
            _ => work.path(),
        };
        if case.one_core && cpus() > 1 {
            // The client has CPU 0 to itself, as a pod under a 1-CPU limit would; the server
            // (elsewhere in real life) takes the others.
            pin(server_pid, &format!("1-{}", cpus() - 1));
        }
        for set in &sets {
            sync();
            std::thread::sleep(settle);
            let gib = set.bytes() as f64 / (1u64 << 30) as f64;
            let mut results: Vec<Vec<Measure>> = tools.iter().map(|_| Vec::new()).collect();
            // Each run writes into a folder of its own. Deleting thousands of files just
            // before a run makes ext4 slow to allocate inodes for a while (it avoids reusing
            // recently deleted ones), which would tax whichever tool runs next: the
            // many-files set is deleted only after all its runs. Dirty pages are flushed
            // before each run, so no run pays for the previous one's writeback.
            let many_files = set.files.len() > 100;
            let mut run = 0;
            // Round 0 warms up (server caches, the connection path) and is not counted.
            for round in 0..=rounds {
                // Who goes first rotates, so no tool always follows the same one.
                for step in 0..tools.len() {
                    let t = (round + step) % tools.len();
                    let tool = tools[t];
                    run += 1;
                    let dest: PathBuf = dests.join(format!("{}-{run}", set.prefix));
                    std::fs::create_dir_all(&dest).unwrap();
                    let config = work.path().join("curl.cfg");
                    curl_config(&endpoint, set, &dest, &config);
                    sync();
                    let cmd = command(tool, &endpoint, set, &dest, &config, ca);
                    let m = timed(cmd, tool.name(), case.one_core);
                    check(set, &dest, tool);
                    let counted = round > 0;
                    eprintln!(
                        "{} / {} / {}{}: {:.2} s, {:.2} CPU s, {} KiB",
                        case.name,
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
                    // In memory, no inode reuse to avoid, and the memory is wanted back.
                    if !many_files || case.memory {
                        std::fs::remove_dir_all(&dest).unwrap();
                    }
                }
            }
            for run in 1..=run {
                let _ = std::fs::remove_dir_all(dests.join(format!("{}-{run}", set.prefix)));
            }
            // (MiB/s, CPU s/GiB, peak RSS MiB) per tool.
            let rows: Vec<(f64, f64, f64)> = results
                .iter()
                .map(|runs| {
                    let speed = median(
                        runs.iter()
                            .map(|m| set.bytes() as f64 / MIB as f64 / m.seconds)
                            .collect(),
                    );
                    let cpu = median(runs.iter().map(|m| m.cpu / gib).collect());
                    let rss = runs.iter().map(|m| m.rss_kib).max().unwrap_or(0);
                    (speed, cpu, rss as f64 / 1024.0)
                })
                .collect();
            let s5cmd = rows[1];
            for (tool, row) in tools.iter().zip(&rows) {
                let line = format!(
                    "| {} | {} | {} | {:.0} | {:.2} | {:.1} MiB | {:.2}×, {:.2}× |",
                    case.name,
                    set.name,
                    tool.name(),
                    row.0,
                    row.1,
                    row.2,
                    row.0 / s5cmd.0,
                    row.1 / s5cmd.1
                );
                println!("{line}");
                table.push(line);
            }
        }
        if case.one_core && cpus() > 1 {
            pin(server_pid, &format!("0-{}", cpus() - 1));
        }
    }
    println!("\n{} rounds; {machine}\n{}", rounds, table.join("\n"));
}
