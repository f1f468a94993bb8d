//! The download engine against an in-memory source: path mapping, ranged parts, failures,
//! reruns and resume. No sockets; the files land in a real temporary folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use mr_storage_initializer::Error;
use mr_storage_initializer::{Object, Source};
use mr_storage_initializer::{Options, download};

use crate::support::{TempDir, tree};

/// Objects in memory. Records every read; can fail a read of one key at one offset.
struct Mem {
    objects: BTreeMap<String, Vec<u8>>,
    etag: &'static str,
    // Sizes and ranges known (an object store), or neither (a plain HTTP stream).
    sized: bool,
    // `(key, offset)`: a read of `key` that reaches `offset` writes up to it, then fails.
    fail_at: Option<(String, u64)>,
    reads: Mutex<Vec<(String, Option<Range<u64>>)>>,
}

impl Mem {
    fn new(objects: &[(&str, Vec<u8>)]) -> Mem {
        Mem {
            objects: objects
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            etag: "\"e1\"",
            sized: true,
            fail_at: None,
            reads: Mutex::new(Vec::new()),
        }
    }

    fn reads(&self) -> Vec<(String, Option<Range<u64>>)> {
        let mut reads = self.reads.lock().unwrap().clone();
        reads.sort_by_key(|(k, r)| (k.clone(), r.as_ref().map(|r| r.start)));
        reads
    }
}

impl Source for Mem {
    fn list(&self, prefix: &str) -> Result<Vec<Object>, Error> {
        Ok(self
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Object {
                key: k.clone(),
                size: self.sized.then_some(v.len() as u64),
                etag: Some(self.etag.to_string()),
                ranges: self.sized,
                md5: None,
                sha256: None,
            })
            .collect())
    }

    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error> {
        self.reads
            .lock()
            .unwrap()
            .push((key.to_string(), range.clone()));
        let data = &self.objects[key];
        let range = range.unwrap_or(0..data.len() as u64);
        let mut pos = range.start;
        for chunk in data[range.start as usize..range.end as usize].chunks(700) {
            if let Some((k, at)) = &self.fail_at
                && k == key
                && pos + chunk.len() as u64 > *at
                && pos <= *at
            {
                let keep = (*at - pos) as usize;
                out.write_all(&chunk[..keep]).unwrap();
                return Err(Error::Fetch {
                    action: "download",
                    url: format!("mem://{key}"),
                    reason: "connection reset by peer".into(),
                    hint: None,
                });
            }
            out.write_all(chunk).map_err(|e| Error::Fetch {
                action: "download",
                url: format!("mem://{key}"),
                reason: e.to_string(),
                hint: None,
            })?;
            pos += chunk.len() as u64;
        }
        Ok(())
    }
}

/// Deterministic bytes that differ at every offset a part boundary could hide.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect()
}

fn options(part_size: u64, jobs: usize) -> Options {
    Options {
        jobs,
        dry_run: false,
        part_size,
        ..Options::default()
    }
}

fn dest_in(tmp: &TempDir) -> PathBuf {
    tmp.path().join("dest")
}

#[test]
fn path_mapping_table() {
    let source = Mem::new(&[
        ("models/iris/", Vec::new()),
        ("models/iris/model.onnx", bytes(3000, 1)),
        ("models/iris/1/", Vec::new()),
        ("models/iris/1/config.pbtxt", b"name: iris".to_vec()),
        ("models/iris/empty.txt", Vec::new()),
        ("models/iris2/model.onnx", b"sibling folder".to_vec()),
        ("models/iris.bak", b"sibling file".to_vec()),
    ]);
    let cases: &[(&str, &[&str])] = &[
        // (prefix, files written)
        (
            "models/iris/",
            &["1/config.pbtxt", "empty.txt", "model.onnx"],
        ),
        ("models/iris.bak", &["iris.bak"]),
        (
            "models/",
            &[
                "iris.bak",
                "iris/1/config.pbtxt",
                "iris/empty.txt",
                "iris/model.onnx",
                "iris2/model.onnx",
            ],
        ),
    ];
    for (prefix, expected) in cases {
        let tmp = TempDir::new("engine-map");
        let dest = dest_in(&tmp);
        let summary =
            download(&source, prefix, "mem://", &dest, &options(1 << 20, 4), &()).unwrap();
        let written = tree(&dest);
        assert_eq!(
            written.keys().map(String::as_str).collect::<Vec<_>>(),
            *expected,
            "prefix {prefix}"
        );
        assert_eq!(summary.written, expected.len(), "prefix {prefix}");
        for (rel, data) in &written {
            let key = source
                .objects
                .keys()
                .find(|k| k.ends_with(rel.as_str()) && source.objects[*k] == *data);
            assert!(
                key.is_some(),
                "{prefix}: {rel} does not hold its object's bytes"
            );
        }
    }
    // A prefix without a trailing slash takes the folder (never `iris2/` or `iris.bak`), and
    // the object of that exact name too, under its basename.
    let mut objects = source.objects;
    objects.insert(
        "models/iris".into(),
        b"the object named by the prefix".to_vec(),
    );
    let source = Mem {
        objects,
        ..Mem::new(&[])
    };
    let tmp = TempDir::new("engine-map");
    let dest = dest_in(&tmp);
    download(
        &source,
        "models/iris",
        "mem://",
        &dest,
        &options(1 << 20, 4),
        &(),
    )
    .unwrap();
    assert_eq!(
        tree(&dest).keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["1/config.pbtxt", "empty.txt", "iris", "model.onnx"]
    );
}

#[test]
fn keys_leaving_dest_fail_before_anything_is_written() {
    for bad in ["m/../../escape", "/etc/cron.d/x", "m/a/../../../x"] {
        let (prefix, key) = if bad.starts_with('/') {
            ("", bad)
        } else {
            ("m/", bad)
        };
        let source = Mem::new(&[("m/ok.bin", bytes(10, 2)), (key, bytes(10, 3))]);
        let tmp = TempDir::new("engine-escape");
        let dest = dest_in(&tmp);
        let err = download(
            &source,
            prefix,
            "mem://b/",
            &dest,
            &options(1 << 20, 4),
            &(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("refusing object '{key}' of 'mem://b/': ")),
            "{text}"
        );
        assert!(text.contains("would leave DEST_DIR"), "{text}");
        assert!(
            source.reads().is_empty(),
            "{bad}: read before the plan failed"
        );
        assert!(tree(tmp.path()).is_empty(), "{bad}: something was written");
    }
}

#[test]
fn ranged_parts_reassemble_byte_exact() {
    let big = bytes(10_007, 4);
    let source = Mem::new(&[("m/big.bin", big.clone()), ("m/small.bin", bytes(999, 5))]);
    let tmp = TempDir::new("engine-parts");
    let dest = dest_in(&tmp);
    let summary = download(&source, "m/", "mem://", &dest, &options(1000, 4), &()).unwrap();
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    assert_eq!(summary.bytes, 10_007 + 999);
    let reads = source.reads();
    let big_reads: Vec<_> = reads
        .iter()
        .filter(|(k, _)| k == "m/big.bin")
        .map(|(_, r)| r.clone().unwrap())
        .collect();
    // 11 parts of 1000 bytes (the last 7), disjoint and covering the object.
    assert_eq!(big_reads.len(), 11);
    let mut next = 0;
    for r in &big_reads {
        assert_eq!(r.start, next);
        next = r.end;
    }
    assert_eq!(next, 10_007);
    // Objects no larger than a part are one plain read.
    assert!(reads.contains(&("m/small.bin".into(), None)));
    assert_eq!(
        tree(&dest).len(),
        2,
        "temporary files left: {:?}",
        tree(&dest).keys()
    );
}

#[test]
fn a_failure_mid_object_leaves_no_file_under_its_final_name_and_a_rerun_resumes() {
    let big = bytes(10_007, 6);
    let mut source = Mem::new(&[("m/big.bin", big.clone())]);
    source.fail_at = Some(("m/big.bin".into(), 5_500));
    let tmp = TempDir::new("engine-fail");
    let dest = dest_in(&tmp);
    // One worker: parts 0..5 finish, part 5 fails at byte 5500.
    let err = download(&source, "m/", "mem://", &dest, &options(1000, 1), &()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot download mem://m/big.bin: connection reset by peer"
    );
    assert!(
        !dest.join("big.bin").exists(),
        "a final name after a failure"
    );
    let left = tree(&dest);
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        vec![".big.bin.mrsi-part", ".big.bin.mrsi-parts"]
    );

    // The rerun asks only for the parts not finished before.
    let healthy = Mem::new(&[("m/big.bin", big.clone())]);
    download(&healthy, "m/", "mem://", &dest, &options(1000, 3), &()).unwrap();
    let starts: Vec<u64> = healthy
        .reads()
        .into_iter()
        .map(|(_, r)| r.unwrap().start)
        .collect();
    assert_eq!(starts, vec![5000, 6000, 7000, 8000, 9000, 10_000]);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    assert_eq!(tree(&dest).len(), 1, "left: {:?}", tree(&dest).keys());
}

#[test]
fn a_rerun_fetches_only_the_byte_ranges_the_journal_lacks() {
    // Progress is noted inside parts (every 8 MiB in a real run), so the ranges on disk need
    // not end where parts do: here a part done to byte 400, and one from 1000 to 1700 (as a
    // run with other parts leaves it). Everything else must be fetched, cut at part ends.
    let big = bytes(3000, 9);
    let tmp = TempDir::new("engine-ranges");
    let dest = dest_in(&tmp);
    std::fs::create_dir_all(&dest).unwrap();
    let mut partial = vec![0u8; 3000];
    for r in [0..400, 1000..1700] {
        partial[r.clone()].copy_from_slice(&big[r]);
    }
    std::fs::write(dest.join(".big.bin.mrsi-part"), &partial).unwrap();
    std::fs::write(
        dest.join(".big.bin.mrsi-parts"),
        "mrsi-parts v2 size=3000 etag=\"e1\"\n0 400\n1000 1700\n",
    )
    .unwrap();
    let source = Mem::new(&[("m/big.bin", big.clone())]);
    download(&source, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    let ranges: Vec<Range<u64>> = source
        .reads()
        .into_iter()
        .map(|(_, r)| r.unwrap())
        .collect();
    assert_eq!(ranges, vec![400..1000, 1700..2000, 2000..3000]);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    assert_eq!(tree(&dest).len(), 1, "left: {:?}", tree(&dest).keys());
}

#[test]
fn a_journal_without_its_temporary_file_is_ignored() {
    let big = bytes(5_000, 15);
    let mut source = Mem::new(&[("m/big.bin", big.clone())]);
    source.fail_at = Some(("m/big.bin".into(), 3_500));
    let tmp = TempDir::new("engine-orphan");
    let dest = dest_in(&tmp);
    download(&source, "m/", "mem://", &dest, &options(1000, 1), &()).unwrap_err();
    std::fs::remove_file(dest.join(".big.bin.mrsi-part")).unwrap();

    let healthy = Mem::new(&[("m/big.bin", big.clone())]);
    download(&healthy, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!(healthy.reads().len(), 5);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
}

#[test]
fn a_changed_object_is_not_resumed() {
    let mut source = Mem::new(&[("m/big.bin", bytes(5_000, 7))]);
    source.fail_at = Some(("m/big.bin".into(), 3_500));
    let tmp = TempDir::new("engine-etag");
    let dest = dest_in(&tmp);
    download(&source, "m/", "mem://", &dest, &options(1000, 1), &()).unwrap_err();

    // Same size, new contents and ETag: every part is fetched again.
    let changed = bytes(5_000, 8);
    let mut healthy = Mem::new(&[("m/big.bin", changed.clone())]);
    healthy.etag = "\"e2\"";
    download(&healthy, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!(healthy.reads().len(), 5);
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), changed);
}

#[test]
fn a_rerun_skips_complete_files_and_removes_stale_temporaries() {
    let source = Mem::new(&[("m/a.bin", bytes(100, 9)), ("m/sub/b.bin", bytes(200, 10))]);
    let tmp = TempDir::new("engine-rerun");
    let dest = dest_in(&tmp);
    download(&source, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!(source.reads().len(), 2);

    // Leftovers of some killed run beside this plan's files (a complete one, and one fetched
    // again), and files that are not ours, one of them named like a leftover.
    std::fs::write(dest.join("sub/.b.bin.mrsi-part"), b"partial").unwrap();
    std::fs::write(dest.join("sub/.b.bin.mrsi-parts"), b"journal").unwrap();
    std::fs::write(dest.join(".a.bin.mrsi-parts"), b"journal").unwrap();
    std::fs::write(dest.join(".old.bin.mrsi-part"), b"not in this plan").unwrap();
    std::fs::write(dest.join("unrelated.txt"), b"keep me").unwrap();
    // A truncated file under a final name (written by something else) is fetched again.
    std::fs::write(dest.join("a.bin"), b"short").unwrap();

    let again = Mem::new(&[("m/a.bin", bytes(100, 9)), ("m/sub/b.bin", bytes(200, 10))]);
    let summary = download(&again, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!(again.reads(), vec![("m/a.bin".into(), None)]);
    assert_eq!((summary.written, summary.skipped), (1, 1));
    let files = tree(&dest);
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![".old.bin.mrsi-part", "a.bin", "sub/b.bin", "unrelated.txt"]
    );
    assert_eq!(files["a.bin"], bytes(100, 9));
    assert_eq!(files["unrelated.txt"], b"keep me");
}

#[test]
fn a_rerun_fetches_a_new_version_of_the_same_size() {
    let source = Mem::new(&[("m/w.bin", bytes(300, 1))]);
    let tmp = TempDir::new("engine-version");
    let dest = dest_in(&tmp);
    download(&source, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();

    // Retrained: same size, new bytes and ETag.
    let mut retrained = Mem::new(&[("m/w.bin", bytes(300, 2))]);
    retrained.etag = "\"e2\"";
    let summary = download(&retrained, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!((summary.written, summary.skipped), (1, 0));
    assert_eq!(std::fs::read(dest.join("w.bin")).unwrap(), bytes(300, 2));

    // The same object from another URI, or a corrupt manifest: downloaded again.
    let summary = download(&retrained, "m/", "mem2://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!((summary.written, summary.skipped), (1, 0));
    std::fs::write(
        dest.join(".mrsi-manifest"),
        b"mrsi-manifest v1\n{not json}\n",
    )
    .unwrap();
    let summary = download(&retrained, "m/", "mem2://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!((summary.written, summary.skipped), (1, 0));
    // Nothing changed: skipped.
    let summary = download(&retrained, "m/", "mem2://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!((summary.written, summary.skipped), (0, 1));
}

#[test]
fn a_stream_of_unknown_size_is_one_read() {
    let data = bytes(4321, 11);
    let mut source = Mem::new(&[("page.bin", data.clone())]);
    source.sized = false;
    let tmp = TempDir::new("engine-stream");
    let dest = dest_in(&tmp);
    let summary = download(&source, "", "mem://", &dest, &options(1000, 4), &()).unwrap();
    assert_eq!(source.reads(), vec![("page.bin".into(), None)]);
    assert_eq!(std::fs::read(dest.join("page.bin")).unwrap(), data);
    assert_eq!(summary.bytes, 4321);
}

#[test]
fn a_link_in_dest_is_never_written_through() {
    let tmp = TempDir::new("engine-link");
    let dest = dest_in(&tmp);
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dest.join("sub")).unwrap();
    let source = Mem::new(&[("sub/x.bin", bytes(10, 12))]);
    let err = download(&source, "", "mem://", &dest, &options(1000, 1), &()).unwrap_err();
    assert!(
        err.to_string().contains("a symbolic link is in the way"),
        "{err}"
    );
    assert!(tree(&elsewhere).is_empty());
}

#[test]
fn dry_run_writes_nothing() {
    let source = Mem::new(&[("m/a.bin", bytes(100, 13))]);
    let tmp = TempDir::new("engine-dry");
    let dest = dest_in(&tmp);
    let opts = Options {
        dry_run: true,
        ..options(1000, 1)
    };
    let summary = download(&source, "m/", "mem://", &dest, &opts, &()).unwrap();
    assert_eq!(summary.paths, vec![PathBuf::from("a.bin")]);
    assert!(!dest.exists());
    assert!(source.reads().is_empty());
}

#[test]
fn nothing_under_the_prefix_is_an_error() {
    let source = Mem::new(&[("m/", Vec::new()), ("m2/a", bytes(1, 14))]);
    let tmp = TempDir::new("engine-empty");
    let err = download(
        &source,
        "m",
        "mem://b/m",
        &dest_in(&tmp),
        &options(1000, 1),
        &(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "nothing to download: no objects under 'mem://b/m'"
    );
}

#[test]
fn keys_named_like_temporary_files_fail_the_plan() {
    for (bad, named) in [
        ("m/.w.bin.mrsi-part", ".w.bin.mrsi-part"),
        ("m/sub/.w.bin.mrsi-parts", ".w.bin.mrsi-parts"),
        ("m/.x.mrsi-part/y", ".x.mrsi-part"),
    ] {
        let source = Mem::new(&[("m/w.bin", bytes(10, 16)), (bad, bytes(10, 17))]);
        let tmp = TempDir::new("engine-tempname");
        let dest = dest_in(&tmp);
        let err = download(&source, "m/", "mem://b/", &dest, &options(1000, 2), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "refusing object '{bad}' of 'mem://b/': '{named}' is named like this program's temporary files (.NAME.mrsi-part, .NAME.mrsi-parts)"
            )
        );
        assert!(
            source.reads().is_empty(),
            "{bad}: read before the plan failed"
        );
        assert!(tree(tmp.path()).is_empty(), "{bad}: something was written");
    }
}

#[test]
fn temporary_looking_files_this_run_did_not_plan_survive() {
    let tmp = TempDir::new("engine-theirs");
    let dest = dest_in(&tmp);
    std::fs::create_dir_all(dest.join("sub")).unwrap();
    std::fs::write(dest.join(".x.mrsi-part"), b"a user's file").unwrap();
    std::fs::write(dest.join("sub/.y.bin.mrsi-parts"), b"another").unwrap();
    let source = Mem::new(&[("m/a.bin", bytes(100, 18)), ("m/big.bin", bytes(3000, 19))]);
    download(&source, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    assert_eq!(
        tree(&dest).keys().map(String::as_str).collect::<Vec<_>>(),
        vec![".x.mrsi-part", "a.bin", "big.bin", "sub/.y.bin.mrsi-parts"]
    );
    assert_eq!(tree(&dest)[".x.mrsi-part"], b"a user's file");
}

#[test]
fn a_hard_link_at_a_temporary_name_is_never_written_through() {
    let tmp = TempDir::new("engine-hardlink");
    let dest = dest_in(&tmp);
    std::fs::create_dir_all(&dest).unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let big = bytes(3000, 20);
    // The big one has the object's size and a journal that matches it: a resume would write
    // the missing parts into it.
    let planted = [
        ("small", b"precious".to_vec(), ".small.bin.mrsi-part"),
        ("big", vec![7; 3000], ".big.bin.mrsi-part"),
        (
            "journal",
            b"mrsi-parts v2 size=3000 etag=\"e1\"\n0 1000\n".to_vec(),
            ".big.bin.mrsi-parts",
        ),
    ];
    for (name, data, temp) in &planted {
        std::fs::write(outside.join(name), data).unwrap();
        std::fs::hard_link(outside.join(name), dest.join(temp)).unwrap();
    }
    let source = Mem::new(&[("m/small.bin", bytes(10, 21)), ("m/big.bin", big.clone())]);
    download(&source, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
    for (name, data, _) in &planted {
        assert_eq!(&std::fs::read(outside.join(name)).unwrap(), data, "{name}");
    }
    assert_eq!(
        tree(&dest).keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["big.bin", "small.bin"]
    );
    assert_eq!(tree(&dest)["big.bin"], big);
    assert_eq!(tree(&dest)["small.bin"], bytes(10, 21));
}

// The manifest's lines after the header, by path, as the program wrote them.
fn manifest_lines(dest: &std::path::Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dest.join(".mrsi-manifest")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("mrsi-manifest v1"));
    lines
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).unwrap();
            (entry["path"].as_str().unwrap().to_string(), l.to_string())
        })
        .collect()
}

#[test]
fn the_manifest_read_line_by_line_keeps_its_rules() {
    let objects = [("m/a.bin", bytes(100, 22)), ("m/b.bin", bytes(200, 23))];
    let tmp = TempDir::new("engine-manifest");
    let dest = dest_in(&tmp);
    download(
        &Mem::new(&objects),
        "m/",
        "mem://",
        &dest,
        &options(1000, 2),
        &(),
    )
    .unwrap();
    // The lines the last run wrote for a.bin and b.bin.
    let written = || {
        let lines = manifest_lines(&dest);
        (lines["a.bin"].clone(), lines["b.bin"].clone())
    };
    // What a rerun over `manifest` fetches, and how many files it skips.
    let rerun = |manifest: String| {
        std::fs::write(dest.join(".mrsi-manifest"), manifest).unwrap();
        let source = Mem::new(&objects);
        let summary = download(&source, "m/", "mem://", &dest, &options(1000, 2), &()).unwrap();
        assert_eq!(tree(&dest)["a.bin"], bytes(100, 22));
        let fetched: Vec<String> = source.reads().into_iter().map(|(k, _)| k).collect();
        (fetched, summary.skipped)
    };
    // The same entry, for a file at another inode: it vouches for nothing on disk.
    let stale = |line: &str| line.replacen("\"ino\":", "\"ino\":1", 1);
    let header = "mrsi-manifest v1\n";
    let none: Vec<String> = Vec::new();
    let both = vec!["m/a.bin".to_string(), "m/b.bin".to_string()];

    // Of two lines for one path, the last counts.
    let (a, b) = written();
    let old = stale(&a);
    assert_eq!(
        rerun(format!("{header}{a}\n{b}\n{old}\n")),
        (vec!["m/a.bin".into()], 1)
    );
    let (a, b) = written();
    let old = stale(&a);
    assert_eq!(
        rerun(format!("{header}{old}\n{a}\n{b}\n")),
        (none.clone(), 2)
    );
    // The kept lines are carried into the next manifest, once each.
    assert_eq!(written(), (a.clone(), b.clone()));
    assert_eq!(manifest_lines(&dest).len(), 2);
    // A partial last line (a run stopped mid-append) is skipped, the rest still counts.
    assert_eq!(
        rerun(format!("{header}{a}\n{b}\n{{\"path\":\"c")),
        (none.clone(), 2)
    );

    // Not a manifest: a foreign header, a corrupt line, a line over 1 MiB, or over 64 MiB in
    // all. Everything is fetched again.
    let (a, b) = written();
    assert_eq!(
        rerun(format!("mrsi-manifest v2\n{a}\n{b}\n")),
        (both.clone(), 0)
    );
    let (a, b) = written();
    assert_eq!(rerun(format!("{header}{a}\n{{\n{b}\n")), (both.clone(), 0));
    // Valid entries for another path, with a key of `len` bytes.
    let long = |len: usize| {
        let key = format!("m/{}", "k".repeat(len));
        let entry = serde_json::json!({"path": "x", "uri": "mem://", "key": key, "size": 1,
            "version": "\"e1\"", "ino": 1, "mtime": [0, 0]});
        format!("{entry}\n")
    };
    let (a, b) = written();
    let too_long = long(1 << 20);
    assert_eq!(
        rerun(format!("{header}{a}\n{b}\n{too_long}")),
        (both.clone(), 0)
    );
    let (a, b) = written();
    let padding = long(100 << 10).repeat(64 * 1024 / 100 + 1);
    assert!(padding.len() > 64 << 20);
    assert_eq!(rerun(format!("{header}{a}\n{b}\n{padding}")), (both, 0));
    // Just under both limits, the same lines vouch.
    let (a, b) = written();
    let padding = long(1000 << 10).repeat(60);
    assert!(padding.len() < (64 << 20) - 1000);
    assert_eq!(rerun(format!("{header}{padding}{a}\n{b}\n")), (none, 2));
}

#[test]
fn an_entry_too_long_for_the_manifest_is_not_noted() {
    // A source URI of 1 MiB: its entries would make the manifest unreadable for a rerun, so
    // they are left out, and only these files are fetched again.
    let uri = format!("mem://{}", "u".repeat(1 << 20));
    let objects = [("m/a.bin", bytes(100, 24))];
    let tmp = TempDir::new("engine-manifest-long");
    let dest = dest_in(&tmp);
    download(
        &Mem::new(&objects),
        "m/",
        &uri,
        &dest,
        &options(1000, 2),
        &(),
    )
    .unwrap();
    assert!(manifest_lines(&dest).is_empty());
    let source = Mem::new(&objects);
    let summary = download(&source, "m/", &uri, &dest, &options(1000, 2), &()).unwrap();
    assert_eq!((summary.written, summary.skipped), (1, 0));
    assert_eq!(tree(&dest)["a.bin"], bytes(100, 24));
}
