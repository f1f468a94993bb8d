//! Writing under `DEST_DIR` without ever leaving it: folders created one level at a time and
//! never through a symbolic link, files written under a temporary name and renamed into place,
//! and the temporary files a killed run left for this run's files cleaned up.
//!
//! Used by the download engine and by archive extraction alike.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::Error;

/// Ends the hidden name a file is written under until it is complete.
pub(crate) const TEMP_SUFFIX: &str = ".mrsi-part";
/// Ends the hidden name of a part file's journal (which ranged parts are done).
pub(crate) const JOURNAL_SUFFIX: &str = ".mrsi-parts";

/// `dir/.name.mrsi-part` for `dir/name`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    sibling(path, TEMP_SUFFIX)
}

/// `dir/.name.mrsi-parts` for `dir/name`.
pub(crate) fn journal_path(path: &Path) -> PathBuf {
    sibling(path, JOURNAL_SUFFIX)
}

/// Whether `name` has the shape of a temporary name (`.NAME.mrsi-part` or `.NAME.mrsi-parts`):
/// no object may land under one, so every such name beside a planned file is this program's.
pub(crate) fn is_temp_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') && (name.ends_with(TEMP_SUFFIX) || name.ends_with(JOURNAL_SUFFIX))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates `DEST_DIR` and any folders above it that are missing. When it, or a folder above it,
/// is a file, the error names that file: the system's "File exists" or "Not a directory" does
/// not say which path is the file.
pub(crate) fn create_root(dest: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dest).map_err(|e| {
        let file = dest
            .ancestors()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()));
        match file {
            Some(file) => Error::NotAFolder {
                dest: dest.to_path_buf(),
                file: file.to_path_buf(),
            },
            None => Error::io("create folder", dest, e),
        }
    })
}

/// Creates the folders of `relative` (a path checked by `plan::safe_relative`) below `dest`
/// and returns the file's full path. Refuses to pass through a symbolic link or a file, so a
/// link left in `DEST_DIR` cannot send a write elsewhere.
pub(crate) fn prepare(dest: &Path, relative: &Path) -> Result<PathBuf, Error> {
    make_dirs(dest, relative.parent().unwrap_or(Path::new("")))?;
    let path = dest.join(relative);
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && meta.is_dir()
    {
        return Err(refuse(&path, "a folder is in the way of a file"));
    }
    Ok(path)
}

/// Creates the folder `relative` below `dest`, one level at a time, never through a symbolic
/// link or a file.
pub(crate) fn make_dirs(dest: &Path, relative: &Path) -> Result<(), Error> {
    let mut dir = dest.to_path_buf();
    for component in relative.components() {
        let Component::Normal(name) = component else {
            // safe_relative has already refused these; this guards against a caller that did not.
            return Err(refuse(&dir, "the path is not a plain relative path"));
        };
        dir.push(name);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refuse(
                    &dir,
                    "a symbolic link is in the way; refusing to write through it",
                ));
            }
            Ok(_) => return Err(refuse(&dir, "a file is in the way of a folder")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(|e| Error::io("create folder", &dir, e))?;
            }
            Err(e) => return Err(Error::io("inspect", &dir, e)),
        }
    }
    Ok(())
}

fn refuse(path: &Path, why: &str) -> Error {
    Error::io("write under", path, io::Error::other(why.to_string()))
}

/// Flushes a finished file's bytes to disk before it is renamed into place: after a node
/// crash, a final name must never hold a file whose blocks were not written (zeros).
pub(crate) fn sync_file(file: &File, path: &Path) -> Result<(), Error> {
    file.sync_data()
        .map_err(|e| Error::io("flush to disk", path, e))
}

/// Flushes the folder `dir`: the names renamed or linked into it survive a crash.
pub(crate) fn sync_folder(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("flush to disk", dir, e))
}

/// Removes the temporary file and journal of `path`, if a killed run left them; returns how
/// many. Nothing else is touched: a file this program did not name is never removed.
pub(crate) fn remove_temporaries(path: &Path) -> Result<usize, Error> {
    let mut removed = 0;
    for temp in [temp_path(path), journal_path(path)] {
        match std::fs::remove_file(&temp) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove temporary file", &temp, e)),
        }
    }
    Ok(removed)
}

/// Creates `path` afresh (never opening an existing file, or a link to one, under the name):
/// whatever is there is a leftover under this program's temporary name, and is removed first.
pub(crate) fn create_fresh(path: &Path) -> Result<File, Error> {
    let create = || OpenOptions::new().write(true).create_new(true).open(path);
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path).map_err(|e| Error::io("remove temporary file", path, e))?;
            create()
        }
        other => other,
    }
    .map_err(|e| Error::io("create", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_hidden_siblings() {
        assert_eq!(
            temp_path(Path::new("/d/sub/w.bin")),
            PathBuf::from("/d/sub/.w.bin.mrsi-part")
        );
        assert_eq!(
            journal_path(Path::new("w.bin")),
            PathBuf::from(".w.bin.mrsi-parts")
        );
    }
}
