//! Archives by the real binary, from a local path: a lone .tar, .tar.gz/.tgz or .zip is
//! extracted into DEST_DIR and removed; hostile entries fail the run and write nothing outside.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::{TempDir, run, tree};

fn files(list: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    list.iter()
        .map(|(k, d)| (k.to_string(), d.to_vec()))
        .collect()
}

/// A tar built entry by entry, with names written raw (so hostile ones are possible).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            let raw = &mut h.as_gnu_mut().unwrap().linkname;
            raw[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn file(mut self, name: &str, data: &[u8]) -> Tar {
        let h = Tar::header(name, tar::EntryType::Regular, data.len() as u64, None);
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(mut self, name: &str) -> Tar {
        let h = Tar::header(name, tar::EntryType::Directory, 0, None);
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Tar {
        let h = Tar::header(name, tar::EntryType::Symlink, 0, Some(target));
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    /// An entry of any kind with its data: GNU long names (`L`), PAX headers (`x`).
    fn raw(mut self, kind: tar::EntryType, name: &str, data: &[u8]) -> Tar {
        let h = Tar::header(name, kind, data.len() as u64, None);
        self.0.append(&h, data).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }

    fn gz(self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&self.bytes()).unwrap();
        gz.finish().unwrap()
    }
}

/// A folder holding `name` with `data` (the source), and a DEST_DIR beside it.
fn setup(name: &str, data: &[u8]) -> (TempDir, PathBuf, PathBuf) {
    let tmp = TempDir::new("archive");
    let src = tmp.path().join("src").join(name);
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, data).unwrap();
    let dest = tmp.path().join("dest");
    (tmp, src, dest)
}

fn extract(src: &Path, dest: &Path) -> crate::support::Run {
    run(&[src.to_str().unwrap(), dest.to_str().unwrap()], &[])
}

#[test]
fn a_tar_gz_is_extracted_and_removed() {
    let archive = Tar::new()
        .dir("./")
        .dir("./1/")
        .file("./1/model.onnx", b"onnx weights")
        .file("./config.pbtxt", b"name: \"iris\"")
        .symlink("./latest", "1")
        .gz();
    for name in ["model.tar.gz", "model.tgz"] {
        let (_tmp, src, dest) = setup(name, &archive);
        let out = extract(&src, &dest);
        out.expect_code(0);
        assert_eq!(
            tree(&dest),
            files(&[
                ("1/model.onnx", b"onnx weights"),
                ("config.pbtxt", b"name: \"iris\""),
                ("latest", b"-> 1"),
            ])
        );
        assert!(
            out.stderr.contains(&format!(
                "info: extracted 2 file(s) from {} and removed it",
                dest.join(name).display()
            )),
            "{out:#?}"
        );
    }
}

#[test]
fn every_member_of_a_multi_member_tar_gz_is_extracted() {
    // pigz and many tools write a .tar.gz as several gzip members, one after another.
    let tar = Tar::new()
        .file("first.txt", b"first")
        .file("second.txt", b"second")
        .bytes();
    let split = 1024; // the first entry's header and data block: a block boundary
    let mut archive = Vec::new();
    for half in [&tar[..split], &tar[split..]] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(half).unwrap();
        archive.extend(gz.finish().unwrap());
    }
    let (_tmp, src, dest) = setup("model.tar.gz", &archive);
    extract(&src, &dest).expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[("first.txt", b"first"), ("second.txt", b"second")])
    );
}

#[test]
fn a_plain_tar_is_extracted() {
    let archive = Tar::new().file("weights.bin", &[7u8; 10_000]).bytes();
    let (_tmp, src, dest) = setup("model.tar", &archive);
    extract(&src, &dest).expect_code(0);
    assert_eq!(tree(&dest), files(&[("weights.bin", &[7u8; 10_000])]));
}

/// A hard link planted at an entry's temporary name, to a file outside DEST_DIR, is replaced,
/// never written through.
#[test]
fn a_hard_link_at_an_entry_temporary_name_is_never_written_through() {
    let archive = Tar::new().file("weights.bin", b"new weights").bytes();
    let (tmp, src, dest) = setup("model.tar", &archive);
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, b"keep me").unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::hard_link(&outside, dest.join(".weights.bin.mrsi-part")).unwrap();
    extract(&src, &dest).expect_code(0);
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    assert_eq!(tree(&dest), files(&[("weights.bin", b"new weights")]));
}

#[test]
fn a_zip_is_extracted() {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.add_directory("variables/", deflated).unwrap();
    zip.start_file("variables/variables.data", deflated)
        .unwrap();
    zip.write_all(&[1u8; 50_000]).unwrap();
    zip.start_file("saved_model.pb", deflated).unwrap();
    zip.write_all(b"graph").unwrap();
    let archive = zip.finish().unwrap().into_inner();
    let (_tmp, src, dest) = setup("model.zip", &archive);
    extract(&src, &dest).expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[
            ("saved_model.pb", b"graph"),
            ("variables/variables.data", &[1u8; 50_000]),
        ])
    );
}

#[test]
fn hostile_tar_entries_fail_and_write_nothing_outside() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot.tar",
            Tar::new()
                .file("ok.txt", b"ok")
                .file("../escaped.txt", b"x")
                .bytes(),
            "entry '../escaped.txt': a '..' segment would leave DEST_DIR",
        ),
        (
            "absolute.tar.gz",
            Tar::new().file("/tmp/escaped.txt", b"x").gz(),
            "entry '/tmp/escaped.txt': an absolute path would leave DEST_DIR",
        ),
        (
            "link-out.tar",
            Tar::new()
                .dir("a/")
                .symlink("a/up", "../../escaped")
                .bytes(),
            "entry 'a/up': a link to '../../escaped' would point outside DEST_DIR",
        ),
        (
            "link-abs.tar",
            Tar::new().symlink("passwd", "/etc/passwd").bytes(),
            "entry 'passwd': a link to '/etc/passwd' would point outside DEST_DIR",
        ),
    ];
    for (name, archive, why) in cases {
        let (tmp, src, dest) = setup(name, &archive);
        let out = extract(&src, &dest);
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot extract '{}': {why}",
                dest.join(name).display()
            ),
            "{name}"
        );
        // Nothing beside dest and src: no escaped file anywhere in the test folder.
        let mut top: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, vec!["dest", "src"], "{name}");
        assert!(!Path::new("/tmp/escaped.txt").exists());
    }
}

/// One PAX record: its length (which counts itself), key and value.
fn pax(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[test]
fn long_names_and_pax_records_are_capped() {
    use tar::EntryType::{GNULongName, XHeader};
    let name = format!("{}/{}", "n".repeat(150), "m".repeat(150));
    let fine = Tar::new()
        .raw(GNULongName, "././@LongLink", format!("{name}\0").as_bytes())
        .file("short", b"long name")
        .raw(XHeader, "PaxHeader", &pax("path", &format!("p/{name}")))
        .file("short", b"pax path")
        .bytes();
    let (_tmp, src, dest) = setup("fine.tar", &fine);
    extract(&src, &dest).expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[(&name, b"long name"), (&format!("p/{name}"), b"pax path")])
    );

    // The tar crate reads a long name or PAX header whole, whatever size it declares.
    let huge = "a".repeat(1 << 20);
    let long = "b".repeat(5000);
    let cases = [
        (
            Tar::new().raw(GNULongName, "././@LongLink", huge.as_bytes()),
            "a GNU long name at byte 0 declares 1048576 bytes (the limit is 4096)".to_string(),
        ),
        (
            Tar::new()
                .file("ok", b"ok")
                .raw(XHeader, "PaxHeader", &pax("comment", &huge)),
            "a PAX header at byte 1024 declares 1048593 bytes (the limit is 65536)".to_string(),
        ),
        (
            Tar::new().raw(XHeader, "PaxHeader", &pax("path", &long)),
            format!(
                "entry '{}…': a name of 5000 bytes (the limit is 4096)",
                &long[..200]
            ),
        ),
    ];
    for (tar, why) in cases {
        let (_tmp, src, dest) = setup("m.tar", &tar.file("after", b"x").bytes());
        let out = extract(&src, &dest);
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot extract '{}': {why}",
                dest.join("m.tar").display()
            )
        );
        assert!(!dest.join("after").exists());
    }
}

/// A gzip member of `len` zeros: members repeat, so a bomb is cheap to build.
fn gz_zeros(len: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0; len]).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_tar_gz_bomb_fails_before_writing_it() {
    // 4 GiB of zeros in a 4 MiB .tar.gz, after a small file.
    let head = Tar::new().file("config.json", b"{}").bytes();
    let size = 4u64 << 30;
    let header = Tar::header("zeros.bin", tar::EntryType::Regular, size, None);
    let mut archive = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    archive.write_all(&head[..head.len() - 1024]).unwrap(); // without its end blocks
    archive.write_all(header.as_bytes()).unwrap();
    let mut archive = archive.finish().unwrap();
    let mib = gz_zeros(1 << 20);
    for _ in 0..size >> 20 {
        archive.extend_from_slice(&mib);
    }
    archive.extend(gz_zeros(1024)); // the end blocks
    assert!(archive.len() < 5 << 20, "{}", archive.len());

    let (_tmp, src, dest) = setup("m.tar.gz", &archive);
    let out = extract(&src, &dest);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot extract '{}': entry 'zeros.bin': its 4294967296 bytes would take the \
             extracted total past 1073741824 bytes (100 times the archive's size, at least 1 GiB)",
            dest.join("m.tar.gz").display()
        )
    );
    // No zeros.bin, whole or partial, under any name; the archive stays.
    let mut names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".mrsi-manifest", "config.json", "m.tar.gz"]);
}

/// A zip of one deflated entry, by hand, so that its sizes and CRC can say anything.
fn zip_of(name: &str, deflated: &[u8], size: u32, crc: u32) -> Vec<u8> {
    // What the local and central headers share: version 2.0, no flags, deflate, no date.
    let mut common = vec![20, 0, 0, 0, 8, 0, 0, 0, 0, 0];
    for v in [crc, deflated.len() as u32, size] {
        common.extend(v.to_le_bytes());
    }
    common.extend((name.len() as u16).to_le_bytes());
    let mut zip = [
        b"PK\x03\x04",
        &common[..],
        &[0, 0],
        name.as_bytes(),
        deflated,
    ]
    .concat();
    let central_at = zip.len() as u32;
    // No extra field or comment, disk 0, no attributes, the local header at offset 0.
    zip.extend(
        [
            b"PK\x01\x02\x14\x00",
            &common[..],
            &[0; 16],
            name.as_bytes(),
        ]
        .concat(),
    );
    let central_len = zip.len() as u32 - central_at;
    zip.extend(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    zip.extend(central_len.to_le_bytes());
    zip.extend(central_at.to_le_bytes());
    zip.extend([0, 0]);
    zip
}

#[test]
fn a_zip_bomb_fails_and_declared_sizes_are_not_trusted() {
    // 2 GiB of zeros: one raw deflate block of 1 MiB of zeros, repeated, then a final empty one.
    let mib = vec![0u8; 1 << 20];
    let mut block = Vec::with_capacity(4096);
    flate2::Compress::new(flate2::Compression::best(), false)
        .compress_vec(&mib, &mut block, flate2::FlushCompress::Sync)
        .unwrap();
    let (mut one, mut crc) = (flate2::Crc::new(), flate2::Crc::new());
    one.update(&mib);
    let mut deflated = Vec::new();
    for _ in 0..2048 {
        deflated.extend_from_slice(&block);
        crc.combine(&one);
    }
    deflated.extend([3, 0]);
    let bomb = zip_of("zeros.bin", &deflated, 2 << 30, crc.sum());

    // A 1 MiB entry that says it holds 10 bytes.
    let liar = zip_of("liar.bin", &[&block[..], &[3, 0]].concat(), 10, one.sum());

    for (archive, why) in [
        (
            bomb,
            "entry 'zeros.bin': its 2147483648 bytes would take the extracted total past \
             1073741824 bytes (100 times the archive's size, at least 1 GiB)",
        ),
        (
            liar,
            "entry 'liar.bin': File is larger than its declared uncompressed size",
        ),
    ] {
        let (_tmp, src, dest) = setup("m.zip", &archive);
        let out = extract(&src, &dest);
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot extract '{}': {why}",
                dest.join("m.zip").display()
            )
        );
        assert_eq!(tree(&dest).keys().collect::<Vec<_>>(), ["m.zip"]);
    }
}

#[test]
fn a_link_inside_the_archive_is_never_written_through() {
    // `d` points at a folder inside DEST_DIR, which is allowed; writing `d/x` through it is not.
    let archive = Tar::new()
        .dir("sub/")
        .symlink("d", "sub")
        .file("d/x", b"through the link")
        .bytes();
    let (_tmp, src, dest) = setup("m.tar", &archive);
    let out = extract(&src, &dest);
    out.expect_code(1);
    assert!(
        out.last_line()
            .ends_with("a symbolic link is in the way; refusing to write through it"),
        "{out:#?}"
    );
    assert!(!dest.join("sub/x").exists());
}

#[test]
fn a_link_cannot_climb_out_through_another_link() {
    // Each target reads as inside DEST_DIR, but on disk `x/..` is the parent of `.`, so l1 is
    // DEST_DIR's parent, l2 the one above, and config.json the secret beside DEST_DIR.
    let archive = Tar::new()
        .symlink("x", ".")
        .symlink("l1", "x/..")
        .symlink("l2", "l1/..")
        .symlink("config.json", "l1/secret.txt")
        .bytes();
    let tmp = TempDir::new("archive-chain");
    let src = tmp.path().join("src/m.tar");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, &archive).unwrap();
    let sentinel = tmp.path().join("sentinel");
    let dest = sentinel.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(sentinel.join("secret.txt"), b"outside").unwrap();

    let out = extract(&src, &dest);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot extract '{}': entry 'l1': a link to 'x/..' puts '..' after a name, \
             which could climb out through another link",
            dest.join("m.tar").display()
        )
    );
    assert_eq!(tree(&dest), files(&[("m.tar", &archive), ("x", b"-> .")]));
    assert_eq!(
        tree(&sentinel).keys().collect::<Vec<_>>(),
        ["dest/m.tar", "dest/x", "secret.txt"]
    );
}

#[test]
fn hostile_zip_entries_fail() {
    let stored = zip::write::SimpleFileOptions::default();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("../escaped.txt", stored).unwrap();
    zip.write_all(b"x").unwrap();
    let dotdot = zip.finish().unwrap().into_inner();

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.add_symlink("passwd", "/etc/passwd", stored).unwrap();
    let link = zip.finish().unwrap().into_inner();

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.add_symlink("long", "t".repeat(5000), stored).unwrap();
    let long = zip.finish().unwrap().into_inner();

    for (archive, why) in [
        (
            dotdot,
            "entry '../escaped.txt': a '..' segment would leave DEST_DIR",
        ),
        (
            link,
            "entry 'passwd': a link to '/etc/passwd' would point outside DEST_DIR",
        ),
        (long, "entry 'long': a link target of more than 4096 bytes"),
    ] {
        let (tmp, src, dest) = setup("m.zip", &archive);
        let out = extract(&src, &dest);
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot extract '{}': {why}",
                dest.join("m.zip").display()
            )
        );
        assert!(!tmp.path().join("escaped.txt").exists());
    }
}

#[test]
fn a_corrupt_archive_is_a_clear_error() {
    let (_tmp, src, dest) = setup("model.tar.gz", b"this is not gzip");
    let out = extract(&src, &dest);
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(&format!(
            "error: cannot extract '{}': ",
            dest.join("model.tar.gz").display()
        )),
        "{out:#?}"
    );
}

#[test]
fn an_archive_among_other_files_is_left_as_it_is() {
    let tmp = TempDir::new("archive-many");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let archive = Tar::new().file("inner.txt", b"inner").gz();
    std::fs::write(src.join("data.tar.gz"), &archive).unwrap();
    std::fs::write(src.join("model.bin"), b"weights").unwrap();
    let dest = tmp.path().join("dest");
    let uri = format!("file://{}", src.display());
    run(&[&uri, dest.to_str().unwrap()], &[]).expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[("data.tar.gz", &archive), ("model.bin", b"weights")])
    );
}

/// An archive cut off in the middle of an entry (a download's bytes were fine, the archive
/// was not) fails, and the entry never appears under its final name, whole or cut: entries are
/// written under a temporary name, flushed and only then renamed. The entries before it stay.
#[test]
fn an_entry_cut_short_never_appears_under_its_name() {
    let big = crate::support::bytes(100_000, 7);
    let whole = Tar::new()
        .file("a.txt", b"first")
        .file("big.bin", &big)
        .bytes();
    // The first entry (header and one block), the second's header and half its data.
    let (_tmp, src, dest) = setup("model.tar", &whole[..512 * 3 + 50_000]);
    let out = extract(&src, &dest);
    out.expect_code(1);
    let mut left = tree(&dest);
    left.remove("model.tar");
    let sizes: Vec<_> = left.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(sizes, [("a.txt", 5)]);
    assert_eq!(left, files(&[("a.txt", b"first")]));
    assert!(
        out.last_line().starts_with(&format!(
            "error: cannot extract '{}': entry 'big.bin': ",
            dest.join("model.tar").display()
        )),
        "{out:#?}"
    );
}
