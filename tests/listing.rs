//! Hostile listings against the real binary, on every object store: the paged listing loop is
//! shared (`fetch::list_by_pages`), and so are its limits. A stub serves the pages
//! (support::listing): no real store repeats or never ends its tokens.

use crate::support::listing::{GIVE_UP, Listing, Store, Tokens};
use std::os::unix::fs::MetadataExt;

use crate::support::{Run, TempDir, run_env};

const STORES: [Store; 3] = [Store::S3, Store::Gcs, Store::Azure];

// The listing's name in the error line, as each store words it.
fn listed(store: Store) -> &'static str {
    match store {
        Store::S3 => "s3://b/m/",
        Store::Gcs => "gs://b/m/",
        Store::Azure => "https://acct.blob.core.windows.net/b/m/",
    }
}

#[test]
fn a_listing_that_repeats_an_earlier_token_fails_on_every_store() {
    for store in STORES {
        let stub = Listing::start(store, Tokens::Alternating, 3);
        let tmp = TempDir::new("listing-loop");
        let dest = tmp.path().join("dest");
        let out = run_env(&[stub.uri(), dest.to_str().unwrap()], &stub.env());
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot list {}: the server sent page 3's token on an earlier page too: the listing would never end",
                listed(store)
            ),
            "{store:?}: {out:#?}"
        );
        assert_eq!(stub.pages(), 3, "{store:?}");
    }
}

#[test]
fn a_listing_that_never_ends_stops_at_the_cap() {
    for store in STORES {
        let stub = Listing::start(store, Tokens::Endless, 1000);
        let tmp = TempDir::new("listing-endless");
        let dest = tmp.path().join("dest");
        let out = run_env(&[stub.uri(), dest.to_str().unwrap()], &stub.env());
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot list {}: more than 250000 objects: more than any model holds",
                listed(store)
            ),
            "{store:?}: {out:#?}"
        );
        assert!(stub.pages() < GIVE_UP, "{store:?}");
    }
}

#[test]
fn two_hundred_thousand_objects_list_in_bounded_memory() {
    // 200 pages of 1,000 keys, the first refused by the plan: the run ends after the listing.
    let stub = Listing::poisoned(Store::S3, Tokens::Pages(200), 1000);
    let tmp = TempDir::new("listing-memory");
    let dest = tmp.path().join("dest");
    let mut env = stub.env();
    env.push(("RUST_LOG", "debug".into()));
    let out = run_env(&[stub.uri(), dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert!(
        out.stderr.contains("200000 object(s) in 200 page(s)"),
        "{out:#?}"
    );
    let peak: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("debug: peak memory (VmHWM): "))
        .and_then(|l| l.strip_suffix(" KiB"))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory logged: {out:#?}"));
    eprintln!("peak RSS listing 200,000 objects: {peak} KiB");
    assert!(peak <= 64 * 1024, "peak RSS {peak} KiB");
}

// The peak RSS (VmHWM, KiB) logged by a run at RUST_LOG=debug.
fn peak_kib(out: &Run) -> u64 {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("debug: peak memory (VmHWM): "))
        .and_then(|l| l.strip_suffix(" KiB"))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory logged: {out:#?}"))
}

// The peak RSS (VmHWM, KiB) of a run over a listing of `pages` pages of 1,000 objects whose
// GETs are answered 404: the run lists, plans and prepares every file, then fails on the
// first download.
fn peak_kib_planning(pages: usize) -> u64 {
    let stub = Listing::start(Store::S3, Tokens::Pages(pages), 1000);
    let tmp = TempDir::new("planning-memory");
    let dest = tmp.path().join("dest");
    let mut env = stub.env();
    env.push(("RUST_LOG", "debug".into()));
    let out = run_env(&[stub.uri(), dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert!(
        out.last_line()
            .starts_with("error: cannot download s3://b/m/")
            && out.last_line().ends_with("HTTP 404 Not Found"),
        "{out:#?}"
    );
    peak_kib(&out)
}

// The peak RSS (VmHWM, KiB) of a rerun over a listing of `pages` pages of 1,000 objects that
// an earlier run downloaded whole: every file is skipped, nothing is fetched. The earlier
// run's DEST_DIR is made here, files and manifest as the program writes them (one flushed
// file at a time would take minutes); a manifest line the program would not take fails the
// run, since the stub answers every GET 404.
fn peak_kib_rerun(pages: usize) -> u64 {
    let stub = Listing::start(Store::S3, Tokens::Pages(pages), 1000);
    let tmp = TempDir::new("rerun-memory");
    let dest = tmp.path().join("dest");
    let mut manifest = String::from("mrsi-manifest v1\n");
    for n in 0..pages {
        let folder = dest.join(format!("{n:06}"));
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..1000 {
            let path = format!("{n:06}/{i:05}.bin");
            let file = folder.join(format!("{i:05}.bin"));
            std::fs::write(&file, b"0123456789").unwrap();
            let meta = std::fs::metadata(&file).unwrap();
            let entry = serde_json::json!({
                "path": path,
                "uri": stub.uri(),
                "key": format!("m/{path}"),
                "size": 10,
                "version": "0123456789abcdef0123456789abcdef",
                "ino": meta.ino(),
                "mtime": [meta.mtime(), meta.mtime_nsec()],
            });
            manifest.push_str(&format!("{entry}\n"));
        }
    }
    std::fs::write(dest.join(".mrsi-manifest"), manifest).unwrap();
    let mut env = stub.env();
    env.push(("RUST_LOG", "debug".into()));
    let out = run_env(&[stub.uri(), dest.to_str().unwrap()], &env);
    out.expect_code(0);
    let files = pages * 1000;
    assert!(
        out.stderr
            .contains(&format!("{files} file(s) already complete")),
        "{out:#?}"
    );
    peak_kib(&out)
}

#[test]
fn each_planned_file_costs_little_memory() {
    // The slope between 10,000 and 110,000 files, so the binary's own size (debug or release)
    // does not count: 64 MiB for 200,000 files is 335 bytes a file, baseline included.
    let small = peak_kib_planning(10);
    let large = peak_kib_planning(110);
    let per_file = large.saturating_sub(small) * 1024 / 100_000;
    eprintln!(
        "peak RSS: {small} KiB for 10,000 files, {large} KiB for 110,000: {per_file} bytes a file"
    );
    assert!(
        per_file <= 300,
        "{per_file} bytes a file ({small} KiB, {large} KiB)"
    );
}

#[test]
fn each_file_of_a_rerun_costs_little_memory() {
    // As for a first run (above): the manifest of every file already downloaded is read
    // without holding it whole, so a rerun of 200,000 files fits where the first run did.
    let small = peak_kib_rerun(10);
    let large = peak_kib_rerun(110);
    let per_file = large.saturating_sub(small) * 1024 / 100_000;
    eprintln!(
        "rerun peak RSS: {small} KiB for 10,000 files, {large} KiB for 110,000: {per_file} bytes a file"
    );
    assert!(
        per_file <= 300,
        "{per_file} bytes a file ({small} KiB, {large} KiB)"
    );
}
