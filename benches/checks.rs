//! What each integrity check and each way of writing costs per GiB, on a fixed input:
//! MD5 (S3 ETags, GCS and Azure MD5s), SHA-256 and SHA-1 (S3 checksums, ring), CRC32 (S3's
//! CRC32 checksum, crc32fast), writing through the page cache or straight to disk
//! (`O_DIRECT`), the flush (`fdatasync`) before a finished file is renamed, and reading a
//! file fetched in parts back to hash it (SHA-256), after either way of writing; and
//! decoding an OCI tar layer (256 MiB of bf16-like weights in a tar), zstd (ruzstd, as
//! `archive::Zstd` drives it, a block at a time) against gzip (flate2), the layers made by the
//! `zstd -3` and `gzip -6` commands as image tools make them. Per GiB of the tar decoded.
//! `BENCH_ONLY=layers` runs only the layer decoders.
//!
//!     cargo bench --bench checks
//!
//! CPU time is the thread's own (`/proc/thread-self/stat`), the least of `BENCH_ROUNDS`
//! runs (5): time spent waiting for a core on a busy machine does not count, and the least
//! run is the least disturbed. The flush is timed on 256 MiB written just before, and scaled
//! to a GiB; it writes into target/ (the disk a DEST_DIR would be on in CI).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

const GIB: usize = 1 << 30;
// The engine's block: `http::BUFFER_SIZE`.
const BLOCK: usize = 256 * 1024;
// Bytes written for the file cases (scaled to a GiB).
const FILE_BYTES: usize = 256 << 20;

// The thread's CPU time so far (user + system), in seconds, at the kernel's tick (10 ms).
fn cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
    // The fields after the command name (in parentheses, which may hold spaces): utime and
    // stime are the 14th and 15th of the line, the 12th and 13th after it.
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

// A page-aligned block of fixed bytes (O_DIRECT needs the alignment).
struct Block {
    vec: Vec<u8>,
    at: usize,
}

impl Block {
    fn new() -> Block {
        let mut vec: Vec<u8> = (0..BLOCK + 4096).map(|i| (i * 131 % 251) as u8).collect();
        let at = vec.as_mut_ptr().align_offset(4096);
        Block { vec, at }
    }

    fn bytes(&self) -> &[u8] {
        &self.vec[self.at..self.at + BLOCK]
    }
}

// Least CPU seconds and wall seconds of `rounds` runs of `f`, scaled by `scale`.
fn least(rounds: usize, scale: f64, mut f: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..rounds)
        .map(|_| f())
        .map(|(c, w)| (c * scale, w * scale))
        .fold((f64::MAX, f64::MAX), |a, b| (a.0.min(b.0), a.1.min(b.1)))
}

// CPU and wall seconds of hashing one GiB with `update`.
fn hashing(block: &Block, mut update: impl FnMut(&[u8])) -> (f64, f64) {
    let (c, w) = (cpu(), Instant::now());
    for _ in 0..GIB / BLOCK {
        update(block.bytes());
    }
    (cpu() - c, w.elapsed().as_secs_f64())
}

// Writes `bytes` at increasing offsets; returns the file and (CPU, wall) of the writes.
fn write(path: &Path, block: &Block, direct: bool, bytes: usize) -> (File, (f64, f64)) {
    let _ = std::fs::remove_file(path);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options.open(path).expect("create the test file");
    file.set_len(bytes as u64).unwrap();
    let (c, w) = (cpu(), Instant::now());
    for i in 0..bytes / BLOCK {
        file.write_all_at(block.bytes(), (i * BLOCK) as u64)
            .expect("write");
    }
    (file, (cpu() - c, w.elapsed().as_secs_f64()))
}

// Writes a GiB and flushes it, then reads it back in order and hashes it (SHA-256) as the
// engine does a file that came in ranged parts (`digest::sha256_of_file`: 64 KiB reads);
// (CPU, wall) of the read-back. A whole GiB: with a quarter of it, the least of 5 runs
// after O_DIRECT writes was sometimes one whose reads the host's cache served at page-cache
// cost, while a whole GiB read back from this VM's disk cost 2.7 CPU s or more in every run.
fn read_back(path: &Path, block: &Block, direct: bool) -> (f64, f64) {
    let (file, _) = write(path, block, direct, GIB);
    file.sync_data().expect("fdatasync");
    drop(file);
    let file = File::open(path).expect("open the test file");
    let mut buf = vec![0u8; 64 << 10];
    let (c, w) = (cpu(), Instant::now());
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut pos = 0;
    while pos < GIB {
        let n = file.read_at(&mut buf, pos as u64).expect("read");
        assert!(n > 0, "the test file ended early");
        ctx.update(&buf[..n]);
        pos += n;
    }
    std::hint::black_box(ctx.finish());
    (cpu() - c, w.elapsed().as_secs_f64())
}

// A tar of one 256 MiB file of bf16-like weights: a random mantissa byte, an exponent byte of
// a few values (about what model weights compress to: 1.2 to 1.4 times).
fn weights_tar() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = vec![0u8; FILE_BYTES];
    for pair in data.chunks_mut(2) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pair[0] = x as u8;
        pair[1] = (0x3b + ((x >> 8) % 5) as u8) | (((x >> 16) & 1) << 7) as u8;
    }
    let mut builder = tar::Builder::new(Vec::with_capacity(FILE_BYTES + 4096));
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "model.safetensors", data.as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

// `tar` through `command` (`zstd -3 -c`, `gzip -6 -c`).
fn compressed(tar: &[u8], command: &[&str]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} must be installed: {e}", command[0]));
    let mut stdin = child.stdin.take().unwrap();
    let input = tar.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

// CPU and wall seconds of reading all of `reader` in 64 KiB reads, scaled to a GiB of
// `expected` decoded bytes.
fn decoding(expected: usize, mut reader: impl Read) -> (f64, f64) {
    let mut buf = vec![0u8; 64 << 10];
    let (c, w) = (cpu(), Instant::now());
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).expect("decode");
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, expected);
    let scale = GIB as f64 / expected as f64;
    ((cpu() - c) * scale, w.elapsed().as_secs_f64() * scale)
}

// One zstd frame read as `archive::Zstd` reads it: a block decoded whenever nothing is left
// to collect.
struct Zstd<'a> {
    source: &'a [u8],
    frame: ruzstd::decoding::FrameDecoder,
}

impl Read for Zstd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::BlockDecodingStrategy;
        while self.frame.can_collect() == 0 && !self.frame.is_finished() {
            self.frame
                .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                .map_err(std::io::Error::other)?;
        }
        self.frame.read(buf)
    }
}

// The layer decoders' rows.
fn layers(rounds: usize) -> Vec<(&'static str, (f64, f64))> {
    let tar = weights_tar();
    let zst = compressed(&tar, &["zstd", "-3", "-T1", "-q", "-c"]);
    let gz = compressed(&tar, &["gzip", "-6", "-c"]);
    println!(
        "tar layer: {} bytes; zstd -3: {} ({:.2}:1), gzip -6: {} ({:.2}:1)",
        tar.len(),
        zst.len(),
        tar.len() as f64 / zst.len() as f64,
        gz.len(),
        tar.len() as f64 / gz.len() as f64
    );
    let zstd = least(rounds, 1.0, || {
        let mut source = zst.as_slice();
        let mut frame = ruzstd::decoding::FrameDecoder::new();
        frame.reset(&mut source).expect("a zstd frame");
        decoding(tar.len(), Zstd { source, frame })
    });
    let gzip = least(rounds, 1.0, || {
        decoding(
            tar.len(),
            flate2::read::MultiGzDecoder::new(std::io::BufReader::new(gz.as_slice())),
        )
    });
    vec![
        ("decode a zstd tar layer (ruzstd)", zstd),
        ("decode a gzip tar layer (flate2)", gzip),
    ]
}

fn print(rows: Vec<(&str, (f64, f64))>) {
    println!("\n| per GiB | CPU s | wall s |\n|---|---|---|");
    for (name, (c, w)) in rows {
        println!("| {name} | {c:.3} | {w:.3} |");
    }
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    if std::env::var("BENCH_ONLY").ok().as_deref() == Some("layers") {
        return print(layers(rounds));
    }
    let block = Block::new();
    let scale = GIB as f64 / FILE_BYTES as f64;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-checks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    let (path, block) = (&path, &block);
    let mut rows: Vec<(&str, (f64, f64))> = Vec::new();
    rows.push((
        "MD5 (md5 crate)",
        least(rounds, 1.0, || {
            let mut ctx = md5::Context::new();
            hashing(block, |b| ctx.consume(b))
        }),
    ));
    for (name, algorithm) in [
        ("SHA-256 (ring)", &ring::digest::SHA256),
        ("SHA-1 (ring)", &ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
    ] {
        rows.push((
            name,
            least(rounds, 1.0, || {
                let mut ctx = ring::digest::Context::new(algorithm);
                hashing(block, |b| ctx.update(b))
            }),
        ));
    }
    rows.push((
        "CRC32 (crc32fast)",
        least(rounds, 1.0, || {
            let mut h = crc32fast::Hasher::new();
            hashing(block, |b| h.update(b))
        }),
    ));
    let flush = |direct: bool| {
        move || {
            let (file, _) = write(path, block, direct, FILE_BYTES);
            let (c, w) = (cpu(), Instant::now());
            file.sync_data().expect("fdatasync");
            (cpu() - c, w.elapsed().as_secs_f64())
        }
    };
    rows.push((
        "write through the page cache",
        least(rounds, scale, || write(path, block, false, FILE_BYTES).1),
    ));
    rows.push((
        "write with O_DIRECT",
        least(rounds, scale, || write(path, block, true, FILE_BYTES).1),
    ));
    rows.push((
        "fdatasync after page-cache writes",
        least(rounds, scale, flush(false)),
    ));
    rows.push((
        "fdatasync after O_DIRECT writes",
        least(rounds, scale, flush(true)),
    ));
    rows.push((
        "read back + SHA-256 after page-cache writes",
        least(rounds, 1.0, || read_back(path, block, false)),
    ));
    rows.push((
        "read back + SHA-256 after O_DIRECT writes",
        least(rounds, 1.0, || read_back(path, block, true)),
    ));
    let _ = std::fs::remove_dir_all(&dir);
    rows.extend(layers(rounds));
    print(rows);
}
