//! Choosing the newest version and the newest model artifact from what the registry listed.
//! Pure functions over the wire types; no I/O.
//!
//! "Newest" is the largest `createTimeSinceEpoch`, ties going to the larger numeric `id`
//! (upstream takes the highest id and includes archived versions; we do not). Both fields are
//! JSON strings holding integers; one that does not parse is a malformed response, named.

use crate::error::{clip, quote};
use crate::registry::client::{Artifact, ModelVersion};

/// Artifact states that never make an artifact the one to download.
pub(crate) const SKIPPED_ARTIFACT_STATES: [&str; 3] =
    ["DELETED", "MARKED_FOR_DELETION", "ABANDONED"];

/// The artifact type this program downloads.
pub(crate) const MODEL_ARTIFACT: &str = "model-artifact";

/// The outcome of choosing among versions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VersionChoice {
    /// Index of the newest live version, if there is one.
    pub(crate) newest: Option<usize>,
    /// How many archived versions were passed over.
    pub(crate) archived: usize,
}

/// Picks the newest version that is not `ARCHIVED`.
pub(crate) fn newest_version(versions: &[ModelVersion]) -> Result<VersionChoice, String> {
    let mut best: Option<(usize, (u64, u64))> = None;
    let mut archived = 0;
    for (i, v) in versions.iter().enumerate() {
        let key = sort_key("model version", &v.id, v.create_time_since_epoch.as_deref())?;
        if v.state.as_deref() == Some("ARCHIVED") {
            archived += 1;
            continue;
        }
        if best.is_none_or(|(_, b)| key > b) {
            best = Some((i, key));
        }
    }
    Ok(VersionChoice {
        newest: best.map(|(i, _)| i),
        archived,
    })
}

/// Whether a further page of a list sorted by `CREATE_TIME DESC` could hold a better choice:
/// when nothing was chosen yet, or when the page's last item ties the chosen one's create time
/// (the tie then goes by id, and a larger id may sit on the next page).
pub(crate) fn needs_next_page(
    last_create_time: Option<&str>,
    chosen_create_time: Option<&str>,
) -> bool {
    match chosen_create_time {
        None => true,
        Some(chosen) => last_create_time == Some(chosen),
    }
}

/// The outcome of choosing among artifacts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ArtifactChoice {
    /// Index of the newest usable model artifact.
    Found(usize),
    /// Model artifacts exist, but the newest usable ones have no URI; the id of the newest.
    EmptyUri(String),
    /// No usable model artifact.
    None {
        /// Artifacts listed in all.
        seen: usize,
        /// Model artifacts skipped for their state.
        skipped: usize,
    },
}

/// Picks the newest artifact of type `model-artifact` with a non-empty URI, skipping states
/// in `SKIPPED_ARTIFACT_STATES`. Other types are filtered here too: older servers ignore the
/// `artifactType` query parameter.
pub(crate) fn newest_model_artifact(artifacts: &[Artifact]) -> Result<ArtifactChoice, String> {
    let mut best: Option<(usize, (u64, u64))> = None;
    let mut newest_empty: Option<(String, (u64, u64))> = None;
    let mut skipped = 0;
    for (i, a) in artifacts.iter().enumerate() {
        if a.artifact_type.as_deref() != Some(MODEL_ARTIFACT) {
            continue;
        }
        if a.state
            .as_deref()
            .is_some_and(|s| SKIPPED_ARTIFACT_STATES.contains(&s))
        {
            skipped += 1;
            continue;
        }
        let id = a.id.as_deref().unwrap_or("");
        let key = sort_key("artifact", id, a.create_time_since_epoch.as_deref())?;
        if a.uri.as_deref().unwrap_or("").trim().is_empty() {
            if newest_empty.as_ref().is_none_or(|(_, b)| key > *b) {
                newest_empty = Some((id.to_string(), key));
            }
            continue;
        }
        if best.is_none_or(|(_, b)| key > b) {
            best = Some((i, key));
        }
    }
    Ok(match (best, newest_empty) {
        (Some((i, _)), _) => ArtifactChoice::Found(i),
        (None, Some((id, _))) => ArtifactChoice::EmptyUri(id),
        (None, None) => ArtifactChoice::None {
            seen: artifacts.len(),
            skipped,
        },
    })
}

// (createTimeSinceEpoch, id) as numbers; both are int64 held in JSON strings.
fn sort_key(what: &str, id: &str, create_time: Option<&str>) -> Result<(u64, u64), String> {
    let id_num = id
        .parse::<u64>()
        .map_err(|_| format!("{what} id {} is not a decimal integer string", quote(id)))?;
    let time = create_time
        .ok_or_else(|| format!("{what} {} has no createTimeSinceEpoch", clip(id)))?
        .parse::<u64>()
        .map_err(|_| {
            format!("{what} {id} has a createTimeSinceEpoch that is not a decimal integer string")
        })?;
    Ok((time, id_num))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, time: &str, state: Option<&str>) -> ModelVersion {
        ModelVersion {
            id: id.into(),
            name: format!("v{id}"),
            state: state.map(Into::into),
            create_time_since_epoch: Some(time.into()),
        }
    }

    fn a(id: &str, ty: &str, time: &str, uri: &str, state: Option<&str>) -> Artifact {
        Artifact {
            id: Some(id.into()),
            artifact_type: Some(ty.into()),
            uri: Some(uri.into()),
            state: state.map(Into::into),
            create_time_since_epoch: Some(time.into()),
        }
    }

    fn versions(newest: Option<usize>, archived: usize) -> VersionChoice {
        VersionChoice { newest, archived }
    }

    fn no_artifact(seen: usize, skipped: usize) -> ArtifactChoice {
        ArtifactChoice::None { seen, skipped }
    }

    fn pick(artifacts: &[Artifact]) -> ArtifactChoice {
        newest_model_artifact(artifacts).unwrap()
    }

    #[test]
    fn newest_by_create_time_not_id() {
        // The highest id (9) was created first: upstream would pick it.
        let list = [
            v("9", "1000", None),
            v("3", "3000", None),
            v("5", "2000", None),
        ];
        let c = newest_version(&list).unwrap();
        assert_eq!(c.newest, Some(1));
    }

    #[test]
    fn create_time_compares_as_number_not_text() {
        let list = [v("1", "999", None), v("2", "1000", None)];
        assert_eq!(newest_version(&list).unwrap().newest, Some(1));
    }

    #[test]
    fn ties_go_to_the_larger_id() {
        let list = [
            v("10", "5000", None),
            v("12", "5000", None),
            v("11", "5000", None),
        ];
        assert_eq!(newest_version(&list).unwrap().newest, Some(1));
    }

    #[test]
    fn archived_is_skipped_and_counted() {
        let list = [
            v("4", "4000", Some("ARCHIVED")),
            v("3", "3000", Some("LIVE")),
        ];
        assert_eq!(newest_version(&list).unwrap(), versions(Some(1), 1));
        let only_archived = [v("4", "4000", Some("ARCHIVED"))];
        assert_eq!(newest_version(&only_archived).unwrap(), versions(None, 1));
        assert_eq!(newest_version(&[]).unwrap(), versions(None, 0));
    }

    #[test]
    fn bad_numbers_name_the_field() {
        let err = newest_version(&[v("1", "yesterday", None)]).unwrap_err();
        assert_eq!(
            err,
            "model version 1 has a createTimeSinceEpoch that is not a decimal integer string"
        );
        let mut no_time = v("2", "1", None);
        no_time.create_time_since_epoch = None;
        assert_eq!(
            newest_version(&[no_time]).unwrap_err(),
            "model version 2 has no createTimeSinceEpoch"
        );
    }

    #[test]
    fn paging_stops_once_nothing_later_can_win() {
        assert!(needs_next_page(Some("10"), None));
        assert!(needs_next_page(Some("10"), Some("10")));
        assert!(!needs_next_page(Some("9"), Some("10")));
    }

    #[test]
    fn newer_doc_artifact_does_not_hide_the_model() {
        let list = [
            a("8", "doc-artifact", "9000", "https://docs/readme.md", None),
            a("7", "metric", "8000", "", None),
            a("5", "model-artifact", "5000", "s3://b/m", Some("LIVE")),
        ];
        assert_eq!(pick(&list), ArtifactChoice::Found(2));
    }

    #[test]
    fn skipped_states_and_empty_uris() {
        let list = [
            a("9", "model-artifact", "9000", "s3://b/new", Some("DELETED")),
            a(
                "8",
                "model-artifact",
                "8000",
                "s3://b/x",
                Some("MARKED_FOR_DELETION"),
            ),
            a("7", "model-artifact", "7000", "s3://b/y", Some("ABANDONED")),
            a("6", "model-artifact", "6000", "", Some("LIVE")),
            a("5", "model-artifact", "5000", "s3://b/old", Some("PENDING")),
        ];
        assert_eq!(pick(&list), ArtifactChoice::Found(4));
        assert_eq!(pick(&list[..4]), ArtifactChoice::EmptyUri("6".into()));
        assert_eq!(pick(&list[..3]), no_artifact(3, 3));
        let docs = [a("1", "doc-artifact", "1", "https://x", None)];
        assert_eq!(pick(&docs), no_artifact(1, 0));
    }
}
